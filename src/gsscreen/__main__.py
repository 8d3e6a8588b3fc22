from gsscreen.cli import main

main()
