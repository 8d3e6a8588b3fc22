# Reference values from pROC for gsscreen's ROC statistics (tests/test_roc.py).
#
# Usage: Rscript scripts/proc_reference.R <folder>
#   <folder> holds <name>.csv files (columns y, p1, p2, with y = 1 GS / 0 control) and seeds.csv
#   (columns name, seed). For each dataset this writes <name>.out: one "key<TAB>values" line per quantity,
#   numbers printed with 17 significant digits so they read back as the same doubles.
# Run it through scripts/make_proc_reference.py, which writes the inputs and collects tests/data/proc_reference.json.
#
# Besides pROC's own outputs, the script replays ci.se()'s and ci.auc()'s stratified bootstrap: with the same seed
# it draws the same sample() calls (controls, then cases, per replicate) and saves the resample indices, so the
# Python tests can feed pROC's exact replicates to gsscreen and compare quantiles exactly, independent of any RNG.

suppressPackageStartupMessages(library(pROC))

args <- commandArgs(trailingOnly = TRUE)
if (length(args) != 1) stop("usage: Rscript scripts/proc_reference.R <folder>")
folder <- args[1]

fmt <- function(x) paste(sprintf("%.17g", as.numeric(x)), collapse = " ")
grid <- seq(0, 1, 0.01)
coord_specs <- c(0, 0.05, 0.1, 0.25, 1 / 3, 0.5, 0.75, 0.8, 0.9, 0.95, 0.975, 1)
n_boot_replay <- 200
n_boot_large <- 2000

seeds <- read.csv(file.path(folder, "seeds.csv"), stringsAsFactors = FALSE)

for (row in seq_len(nrow(seeds))) {
  name <- seeds$name[row]
  seed <- seeds$seed[row]
  d <- read.csv(file.path(folder, paste0(name, ".csv")))
  out <- character(0)
  put <- function(key, values) out <<- c(out, paste0(key, "\t", fmt(values)))

  # direction "<": controls score lower than cases (P(GS) convention); levels fixed so nothing is guessed.
  r1 <- roc(d$y, d$p1, levels = c(0, 1), direction = "<", quiet = TRUE)
  r2 <- roc(d$y, d$p2, levels = c(0, 1), direction = "<", quiet = TRUE)

  put("auc1", as.numeric(auc(r1)))
  put("auc2", as.numeric(auc(r2)))
  put("ci_delong1", as.numeric(ci.auc(r1, method = "delong")))  # lo, auc, hi
  put("ci_delong2", as.numeric(ci.auc(r2, method = "delong")))
  put("ci_delong1_90", as.numeric(ci.auc(r1, method = "delong", conf.level = 0.9)))
  put("var_delong1", var(r1, method = "delong"))
  put("var_delong2", var(r2, method = "delong"))
  tst <- roc.test(r1, r2, method = "delong", paired = TRUE)
  put("test_z", as.numeric(tst$statistic))
  put("test_p", tst$p.value)
  put("test_estimate", as.numeric(tst$estimate))

  all1 <- coords(r1, "all", ret = c("threshold", "specificity", "sensitivity"), transpose = FALSE)
  put("all_threshold", all1$threshold)
  put("all_specificity", all1$specificity)
  put("all_sensitivity", all1$sensitivity)
  put("coord_specs", coord_specs)
  put("coord_sens", coords(r1, coord_specs, input = "specificity", ret = "sensitivity", transpose = FALSE)$sensitivity)
  put("grid", grid)
  put("grid_sens", coords(r1, grid, input = "specificity", ret = "sensitivity", transpose = FALSE)$sensitivity)
  put("grid_sens2", coords(r2, grid, input = "specificity", ret = "sensitivity", transpose = FALSE)$sensitivity)

  # ci.se and ci.auc(bootstrap) with the same seed use the same resamples.
  set.seed(seed)
  cse <- ci.se(r1, specificities = grid, boot.n = n_boot_replay, boot.stratified = TRUE, progress = "none")
  put("cise_lo", cse[, 1])
  put("cise_median", cse[, 2])
  put("cise_hi", cse[, 3])
  set.seed(seed)
  cauc <- ci.auc(r1, method = "bootstrap", boot.n = n_boot_replay, boot.stratified = TRUE, progress = "none")
  put("ciauc_boot", as.numeric(cauc))  # lo, auc, hi

  # Replay the resamples (sample(x, replace = TRUE) is x[sample.int(length(x), length(x), TRUE)]).
  set.seed(seed)
  n0 <- length(r1$controls)
  n1 <- length(r1$cases)
  idx0 <- matrix(0L, n_boot_replay, n0)
  idx1 <- matrix(0L, n_boot_replay, n1)
  sens <- matrix(0, n_boot_replay, length(grid))
  aucs <- numeric(n_boot_replay)
  for (b in seq_len(n_boot_replay)) {
    idx0[b, ] <- sample.int(n0, n0, replace = TRUE)
    idx1[b, ] <- sample.int(n1, n1, replace = TRUE)
    rb <- roc(controls = r1$controls[idx0[b, ]], cases = r1$cases[idx1[b, ]], direction = "<", quiet = TRUE)
    sens[b, ] <- coords(rb, grid, input = "specificity", ret = "sensitivity", transpose = FALSE)$sensitivity
    aucs[b] <- as.numeric(auc(rb))
  }
  replay <- t(apply(sens, 2, quantile, probs = c(0.025, 0.5, 0.975)))
  # The replay must reproduce pROC's own bootstrap, otherwise the saved indices are worthless.
  stopifnot(isTRUE(all.equal(unname(replay), unname(unclass(cse)[, 1:3]), tolerance = 1e-12)))
  stopifnot(isTRUE(all.equal(unname(quantile(aucs, c(0.025, 0.975))), as.numeric(cauc)[c(1, 3)],
                             tolerance = 1e-12)))
  put("boot_idx0", t(idx0) - 1)  # column-major transpose = row-major (replicate, position), 0-based
  put("boot_idx1", t(idx1) - 1)
  put("boot_sens_first", sens[1, ])
  put("boot_aucs", aucs)

  # A larger independent bootstrap for comparing gsscreen's own RNG-based band within Monte-Carlo tolerance.
  set.seed(seed + 1)
  big <- ci.se(r1, specificities = grid, boot.n = n_boot_large, boot.stratified = TRUE, progress = "none")
  put("cise2000_lo", big[, 1])
  put("cise2000_median", big[, 2])
  put("cise2000_hi", big[, 3])

  put("n_controls", n0)
  put("n_cases", n1)
  writeLines(out, file.path(folder, paste0(name, ".out")))
  cat(name, "done\n")
}
cat("pROC", as.character(packageVersion("pROC")), "R", R.version.string, "\n")
