"""Every string the screening pages show, in English and Simplified Chinese (zh-CN), in one place.

Keys are dotted (``result.model_h``); ``{name}`` fields are filled by :func:`t`. Outcomes, the quality gate's reason
and note codes (``reason.<code>``) and upload problems (``error.<code>``) are translated by *code*, so the logic
never depends on the wording. A test checks that both languages hold every key and every code.

The language comes from ``?lang=`` (the switch on every page) or else the browser's ``Accept-Language``.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"

EN: dict[str, str] = {
    "lang.name": "English",
    "lang.switch": "Language",
    "app.title": "gsscreen — photo screening",
    "app.subtitle": "photo screening for genetic syndromes",
    "app.notice": "Research tool, not a medical device. The result is not a diagnosis; a clinician decides.",
    "app.demo": "Demonstration model: Down syndrome only, web-collected labels. Not for patients.",
    "app.model": "Model",
    "app.api_docs": "API documentation",
    "app.model_card": "Model card",
    # upload page
    "index.drop": "Drop frontal face photos here",
    "index.choose": "or click to choose files (JPEG, PNG, WebP, HEIC, GIF; up to {mb} MB each, {n} at a time)",
    "index.age": "Age in months (optional, same for all photos)",
    "index.token": "Access code (API token)",
    "index.submit": "Screen photos",
    "index.privacy_h": "What happens to the photos",
    "index.privacy": "They are processed in memory on this computer and never stored. An audit log keeps the time, "
                     "a fingerprint of each file, the model and the result — no image.",
    "index.tips": "Best results: one child, facing the camera, eyes open, neutral expression, good light.",
    "index.chosen": "{n} photo(s) chosen",
    # outcomes
    "outcome.refer": "GS suspected — refer for genetic evaluation",
    "outcome.no_signal": "no GS signal",
    "outcome.inconclusive": "inconclusive — retake the photo",
    # one result
    "result.title": "screening result",
    "results.title": "screening results",
    "result.photo": "Photo",
    "result.pgs": "P(GS)",
    "result.threshold": "threshold {t}",
    "result.op_line": "Call made at the “{op}” operating point (threshold {t}; on the validation photos: "
                      "sensitivity {se}, specificity {sp}).",
    "result.op_line_plain": "Call made at the model's threshold {t}.",
    "result.no_call": "No call was made: {why}",
    "result.calibrated": "P(GS) is a calibrated probability for a population where {prev} of the children have a "
                         "genetic syndrome (the training photos).",
    "result.calibrated_prev": "P(GS) is calibrated and adjusted to a population where {prev} of the children have a "
                              "genetic syndrome.",
    "result.uncalibrated": "P(GS) is the model's uncalibrated score (this model pack carries no calibration).",
    "result.no_p": "No P(GS): no face could be scored.",
    "result.photo_caption": "The photo. The scored face is boxed in orange.",
    "result.photo_caption_others": "The photo. The scored face is boxed in orange, other faces in blue.",
    "result.heatmap_caption": "Where the model looked (Grad-CAM, mean of the fold models). It shows where, not why.",
    "result.colorbar": "model attention",
    "result.low": "low",
    "result.high": "high",
    "result.quality_h": "Photo quality",
    "result.quality_ok": "No photo-quality problems found.",
    "result.not_checked": "Closed eyes and open mouth are not checked: look at the photo.",
    "result.model_h": "About the model",
    "result.age_range": "Trained on photos of children aged {lo}–{hi} months.",
    "result.age_unknown": "The ages of the training children are not known.",
    "result.age_outside": "This child's age ({age} months) is outside that range: the result is less reliable.",
    "result.model_card_link": "Model card: what it was trained on, how well it did, its limits",
    "result.again": "Screen other photos",
    "result.seconds": "Screened in {s} s. The photos were not stored.",
    "result.reference": "Reference (typed here and printed; never sent or stored)",
    "result.reference_placeholder": "e.g. clinic number",
    "result.print": "Print",
    "result.date": "Date",
    "result.printed_ref": "Reference",
    # batch table
    "batch.h": "All photos",
    "batch.photo": "Photo",
    "batch.result": "Result",
    "batch.pgs": "P(GS)",
    "batch.reasons": "Reasons and notes",
    "batch.csv": "Download the table (CSV)",
    "batch.op": "Operating point",
    # errors
    "error.title": "photo not screened",
    "error.call": "The photo could not be screened",
    "error.again": "Try another photo",
    "error.too_large": "The file is too large.",
    "error.unsupported_type": "This file is not a photo in a supported format (JPEG, PNG, WebP, HEIC, GIF, BMP, "
                              "TIFF).",
    "error.empty": "The file is empty.",
    "error.unreadable": "The photo could not be read: the file may be damaged or incomplete.",
    "error.no_face": "No face was found in the photo.",
    "error.bad_age": "The age must be a number of months between 0 and 300.",
    "error.unauthorized": "The access code is missing or wrong.",
    "error.bad_request": "The upload could not be read. Please try again.",
    "error.too_many": "Too many photos at once: choose at most {n}.",
    "error.forbidden": "This request was refused. Reload the page and try again.",
    "error.csrf": "The page had expired. Reload it and send the photos again.",
    "error.internal_error": "An internal error stopped the screening of this photo. It was not stored; please try "
                            "again.",
    "error.no_photo": "No photo was chosen.",
    # reasons (a face unusable for a call) and notes (told, call still made), by gate / flag code
    "reason.unreadable": "The photo could not be read.",
    "reason.no_face": "No face was found in the photo.",
    "reason.face_too_small": "The face is too small in the photo: take it closer, so the face fills most of the "
                             "frame.",
    "reason.small_face": "The face is small in the photo: take it closer.",
    "reason.blurred": "The face is blurred or out of focus: retake the photo sharp and in good light.",
    "reason.several_faces": "There are several faces of similar size in the photo: photograph one child alone.",
    "reason.head_turned": "The head is turned to one side: the child should look straight at the camera.",
    "reason.head_tilted": "The head is tilted strongly: hold the camera level with the child's face.",
    "reason.photo_rotated": "The photo is sideways or upside down and its upright position could not be told: "
                            "turn it upright and try again.",
    "reason.rotated_photo": "The photo was sideways or upside down.",
    "reason.eyes_not_found": "The eyes could not be located reliably.",
    "reason.implausible_landmarks": "The face's landmarks are implausible (for example eyes below the mouth, or "
                                    "points off the face): retake the photo face-on.",
    "reason.unsure_face": "The face detector is not sure this is a face: retake the photo face-on, in good light.",
    "reason.borderline": "The result lies too close to the decision threshold for a reliable call: small "
                         "differences in how the face is found could put it on the other side. Retake the photo "
                         "face-on, sharp and in good light; if it stays borderline, ask a clinical geneticist.",
    "reason.turned_upright": "The photo was sideways or upside down; it was turned upright before screening.",
    "reason.other_faces": "There are other, smaller faces in the photo: the largest face (boxed) was screened.",
    "reason.outside_age_range": "The child's age is outside the ages the model was trained on.",
    "reason.age_range_unknown": "The ages of the training children are not known.",
    "reason.flat_heatmap": "The heatmap carries no information for this photo.",
    "reason.other": "The photo could not be screened.",
    # model card page
    "card.title": "model card",
    "card.back": "Back to screening",
    # operating point names
    "op.screening": "screening",
    "op.balanced": "balanced",
    "op.pack": "model threshold",
}

ZH: dict[str, str] = {
    "lang.name": "中文",
    "lang.switch": "语言",
    "app.title": "gsscreen — 照片筛查",
    "app.subtitle": "遗传综合征面部照片筛查",
    "app.notice": "本软件为研究工具，不是医疗器械。结果不是诊断，由临床医生作出判断。",
    "app.demo": "演示模型：仅针对唐氏综合征，标签来自网络收集。不得用于患者。",
    "app.model": "模型",
    "app.api_docs": "API 文档",
    "app.model_card": "模型说明卡",
    "index.drop": "将儿童正面面部照片拖放到此处",
    "index.choose": "或点击选择文件（JPEG、PNG、WebP、HEIC、GIF；每张不超过 {mb} MB，一次最多 {n} 张）",
    "index.age": "月龄（可选，适用于所有照片）",
    "index.token": "访问码（API 令牌）",
    "index.submit": "开始筛查",
    "index.privacy_h": "照片如何处理",
    "index.privacy": "照片仅在本机内存中处理，从不保存。"
                     "审计日志只记录时间、每个文件的指纹、模型和结果，不保存任何图像。",
    "index.tips": "最佳拍摄：单个儿童、正对镜头、睁眼、表情自然、光线充足。",
    "index.chosen": "已选择 {n} 张照片",
    "outcome.refer": "疑似遗传综合征 — 建议转诊遗传学评估",
    "outcome.no_signal": "未见遗传综合征征象",
    "outcome.inconclusive": "无法判断 — 请重新拍摄照片",
    "result.title": "筛查结果",
    "results.title": "筛查结果",
    "result.photo": "照片",
    "result.pgs": "P(GS)",
    "result.threshold": "阈值 {t}",
    "result.op_line": "判定采用“{op}”工作点（阈值 {t}；在验证集照片上：灵敏度 {se}，特异度 {sp}）。",
    "result.op_line_plain": "判定采用模型阈值 {t}。",
    "result.no_call": "未作判定：{why}",
    "result.calibrated": "P(GS) 是经过校准的概率，适用于遗传综合征患病比例为 {prev} 的人群（即训练照片的比例）。",
    "result.calibrated_prev": "P(GS) 已校准，并按患病比例 {prev} 的人群进行了调整。",
    "result.uncalibrated": "P(GS) 是模型未经校准的分数（此模型包不含校准）。",
    "result.no_p": "无 P(GS)：未能对面部进行评分。",
    "result.photo_caption": "原始照片。橙色框为被评分的面部。",
    "result.photo_caption_others": "原始照片。橙色框为被评分的面部，蓝色框为其他面部。",
    "result.heatmap_caption": "模型关注的区域（Grad-CAM，各折模型的平均）。它显示位置，而不是原因。",
    "result.colorbar": "模型关注度",
    "result.low": "低",
    "result.high": "高",
    "result.quality_h": "照片质量",
    "result.quality_ok": "未发现照片质量问题。",
    "result.not_checked": "未检查闭眼和张嘴：请查看照片。",
    "result.model_h": "关于模型",
    "result.age_range": "训练照片中的儿童月龄为 {lo}–{hi} 个月。",
    "result.age_unknown": "训练儿童的年龄未知。",
    "result.age_outside": "该儿童的月龄（{age} 个月）不在此范围内：结果可靠性较低。",
    "result.model_card_link": "模型说明卡：训练数据、性能表现与局限",
    "result.again": "筛查其他照片",
    "result.seconds": "筛查用时 {s} 秒。照片未被保存。",
    "result.reference": "备注编号（仅在此输入并打印，不会发送或保存）",
    "result.reference_placeholder": "例如：门诊号",
    "result.print": "打印",
    "result.date": "日期",
    "result.printed_ref": "备注编号",
    "batch.h": "全部照片",
    "batch.photo": "照片",
    "batch.result": "结果",
    "batch.pgs": "P(GS)",
    "batch.reasons": "原因与说明",
    "batch.csv": "下载表格（CSV）",
    "batch.op": "工作点",
    "error.title": "照片未筛查",
    "error.call": "无法筛查这张照片",
    "error.again": "换一张照片",
    "error.too_large": "文件过大。",
    "error.unsupported_type": "该文件不是受支持格式的照片（JPEG、PNG、WebP、HEIC、GIF、BMP、TIFF）。",
    "error.empty": "文件为空。",
    "error.unreadable": "无法读取照片：文件可能已损坏或不完整。",
    "error.no_face": "照片中未找到面部。",
    "error.bad_age": "月龄必须是 0 到 300 之间的数字。",
    "error.unauthorized": "访问码缺失或错误。",
    "error.bad_request": "无法读取上传内容，请重试。",
    "error.too_many": "一次上传的照片过多：最多选择 {n} 张。",
    "error.forbidden": "请求被拒绝。请刷新页面后重试。",
    "error.csrf": "页面已过期。请刷新页面后重新上传照片。",
    "error.internal_error": "筛查这张照片时出现问题。照片未被保存，请重试。",
    "error.no_photo": "未选择照片。",
    "reason.unreadable": "无法读取照片。",
    "reason.no_face": "照片中未找到面部。",
    "reason.face_too_small": "照片中的面部太小：请靠近拍摄，使面部占据画面的大部分。",
    "reason.small_face": "照片中的面部较小：请靠近拍摄。",
    "reason.blurred": "面部模糊或失焦：请在光线充足处重新拍摄清晰的照片。",
    "reason.several_faces": "照片中有多张大小相近的面部：请单独拍摄一名儿童。",
    "reason.head_turned": "头部转向一侧：儿童应正视镜头。",
    "reason.head_tilted": "头部明显倾斜：请使相机与儿童面部保持水平。",
    "reason.photo_rotated": "照片是横向或倒置的，且无法判断正确方向：请将照片转正后重试。",
    "reason.rotated_photo": "照片是横向或倒置的。",
    "reason.eyes_not_found": "无法可靠地定位眼睛。",
    "reason.implausible_landmarks": "面部关键点位置不合理（例如眼睛在嘴巴下方，或关键点在面部之外）：请正面重新拍摄。",
    "reason.unsure_face": "面部检测器不确定这是一张面部：请在光线充足处正面重新拍摄。",
    "reason.borderline": "结果与判定阈值过于接近，无法给出可靠结论：面部定位的微小差异就可能使结果落在阈值另一侧。"
                         "请在光线充足处正面重新拍摄清晰照片；如仍处于临界范围，请咨询临床遗传科医生。",
    "reason.turned_upright": "照片原为横向或倒置，筛查前已自动转正。",
    "reason.other_faces": "照片中还有其他较小的面部：已筛查最大的面部（已框出）。",
    "reason.outside_age_range": "该儿童的年龄不在模型训练数据的年龄范围内。",
    "reason.age_range_unknown": "训练儿童的年龄未知。",
    "reason.flat_heatmap": "该照片的热力图不含有效信息。",
    "reason.other": "无法筛查这张照片。",
    "card.title": "模型说明卡",
    "card.back": "返回筛查",
    "op.screening": "筛查",
    "op.balanced": "平衡",
    "op.pack": "模型阈值",
}

STRINGS: dict[str, dict[str, str]] = {"en": EN, "zh-CN": ZH}


def choose_language(requested: str | None = None, accept_language: str | None = None) -> str:
    """The page language: ``requested`` (``?lang=``) when supported, else the best of ``Accept-Language``
    (any ``zh`` variant → ``zh-CN``), else English."""
    if requested:
        for lang in LANGUAGES:
            if requested.strip().lower() == lang.lower():
                return lang
    best, best_q = DEFAULT_LANGUAGE, -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        tag = tag.strip().lower()
        lang = "zh-CN" if tag.startswith("zh") else "en" if tag.startswith("en") else None
        if lang and q > best_q:  # ties: the earlier tag wins
            best, best_q = lang, q
    return best


def t(lang: str, key: str, **fields: Any) -> str:
    """The string ``key`` in ``lang`` (English when missing there), with ``{fields}`` filled."""
    text = STRINGS.get(lang, EN).get(key) or EN.get(key) or key
    return text.format(**fields) if fields else text


def reason_text(lang: str, code: str) -> str:
    """A gate reason / note / flag code in words (a generic sentence for an unknown code)."""
    return t(lang, f"reason.{code}") if f"reason.{code}" in EN else t(lang, "reason.other")


def error_text(lang: str, code: str, **fields: Any) -> str:
    """An upload problem (UploadError code) in words: never a status number or an exception."""
    return t(lang, f"error.{code}", **fields) if f"error.{code}" in EN else t(lang, "error.bad_request")


__all__ = ["DEFAULT_LANGUAGE", "EN", "LANGUAGES", "STRINGS", "ZH", "choose_language", "error_text", "reason_text",
           "t"]
