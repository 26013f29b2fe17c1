// English and Chinese strings. The page follows the browser's language; the switch overrides it
// and is remembered on this device.

const STRINGS = {
  en: {
    switch_to: "中文",
    notice_title: "Decision aid, not a diagnosis.",
    notice_body: "This app can be wrong. Only a doctor can diagnose a skin condition.",
    step_photo: "1. Photo of the skin",
    take_photo: "Take a photo",
    choose_photo: "Choose a photo",
    photo_hint: "Close up, in daylight, lesion in the middle, no filter.",
    step_crop: "2. Frame the lesion",
    zoom: "Zoom",
    crop_hint: "Drag to move; pinch or slide to zoom. Only the square is analysed.",
    mode: "Where to run the model",
    mode_browser: "On this phone (private, works offline)",
    mode_server: "On the server (the photo is sent, not kept)",
    analyse: "Analyse",
    analysing: "Analysing…",
    step_result: "3. Result",
    verdict_ok: "Most likely: {label} ({p}), of the classes this model knows.",
    exam_sep: ": ",
    // No answer, by reason code (hypoderm.inference.ood / predictor.py): what happened, then what to do.
    verdict_low_confidence: "Uncertain: the model cannot decide between its classes. Please see a dermatologist.",
    advice_low_confidence: "To retake the photo: closer, in daylight, with the lesion centred, no filter.",
    verdict_unsure_skin: "No answer: this may not be a photo of skin, or it is an unusual photo. If it shows a skin problem, please see a dermatologist.",
    advice_unsure_skin: "To try again: photograph the skin itself, closer, in daylight, with the lesion centred, no filter.",
    verdict_unusual_logits: "No answer: the model recognises nothing it knows in this photo. If it shows a skin problem, please see a dermatologist.",
    advice_unusual_logits: "To try again: photograph the skin itself, closer, in daylight, with the lesion centred, no filter.",
    verdict_too_small: "Not analysed: the framed square is too small to judge (fewer than {min} pixels of the photo across); any answer would be a guess.",
    advice_too_small: "Zoom out to frame a larger area, or use a larger photo (taken closer, or at full resolution).",
    verdict_too_dark: "Not analysed: the photo is too dark to judge.",
    advice_too_dark: "Take the photo again with more light, ideally daylight, without flash glare.",
    verdict_little_skin: "Not analysed: too little skin is visible in the square.",
    advice_little_skin: "Move or zoom so that the skin fills most of the square.",
    verdict_not_skin_like: "Not analysed: this looks like a texture, an object, a screen or a drawing rather than a photo of skin.",
    advice_not_skin_like: "Photograph the skin itself, not an object, a screen or a drawing: close up, in daylight.",
    candidates_title: "Possible, all equally (the model cannot choose):",
    limits_title: "What this model cannot tell you",
    limits_known: "This model knows only: {classes}.",
    limits_condition: "It cannot tell {label} from the look-alikes below: it was never shown them and would call them one of its classes. These examinations tell them apart:",
    limits_normal: "“{label}” does not rule out the conditions below: the model was never shown them. These examinations tell them apart:",
    limits_generic: "It was never shown the conditions below and would call them one of its classes. These examinations tell them apart:",
    limits_other: "“{label}” is not a diagnosis of any lesion, and the hypopigmented conditions below, which the model was never shown, may still be present. These examinations tell them apart:",
    see_doctor_exam: "Only a doctor can do these examinations.",
    result_meta: "Computed {where} in {ms} ms.",
    where_browser: "on this device",
    where_server: "on the server",
    gradcam_caption: "Where the model looked when it answered “{label}” (Grad-CAM): red areas weighed most. A heat map is not a diagnosis.",
    gradcam_off: "No heatmap: this version of the model cannot show where it looked.",
    lookalikes_title: "Look-alikes this model cannot recognise",
    not_in_model: "The model cannot recognise this condition",
    card_what: "What it is",
    card_looks: "How it typically looks",
    card_apart: "How it is told apart",
    card_doctor: "When to see a doctor",
    no_card: "No information card for “{label}”.",
    history_title: "History on this device",
    history_hint: "Kept only on this device. The server keeps no image.",
    history_empty: "No cases yet.",
    export_json: "Export JSON",
    delete_all: "Delete all",
    delete_one: "Delete",
    confirm_delete_all: "Delete every case stored on this device?",
    api_docs: "API documentation",
    model_info: "Model {name} {version} ({precision}) · classes: {classes} · {data}",
    // What the model saw, from its metadata (training_data: n_train, train_counts, n_val, n_test)
    trained_split: "trained on {n} photos ({counts}) and {val} more for validation",
    held_out: "; {test} more held out for testing",
    count_in_list: "{label} {n}",
    data_counts_only: "photos in its data set (training and validation together): {data}",
    data_not_recorded: "training data: not recorded",
    history_open: "Show this result again: {what}, {when}",
    past_result: "Past result from {when} (the photo on the left), reopened from the history on this device: not a new analysis.",
    past_meta: "Computed {where} at the time.",
    stale_result: "Earlier result, not from the analysis you just asked for: that one failed (see the message above).",
    list_sep: ", ",
    model_broken: "Warning: this model failed its quality checks when it was made (for example, it gives the same answer for every photo). Do not rely on its answers.",
    runtime_missing: "In-browser inference is not available on this server; the photo will be sent to the server (it keeps no copy).",
    runtime_failed: "In-browser inference could not start on this device; the photo will be sent to the server instead (it keeps no copy).",
    loading_progress: "Getting ready on this phone: {done} of {total} MB downloaded ({pct}%). Only the first visit downloads this.",
    loading_starting: "Getting ready on this phone…",
    getting_ready: "Getting ready on this phone…",
    getting_ready_pct: "Getting ready on this phone… {pct}%",
    runtime_failed_nothing_sent: "The model could not start on this phone, so the photo was not analysed and nothing was sent. To send it to the server instead (it is not kept), choose “On the server” and tap Analyse again.",
    start_failed: "The app could not load the model information. Check the connection and reload the page.",
    unexpected_error: "Something went wrong while analysing the photo. Please try again.",
    offline_server: "You are offline: server inference is not available; use “On this phone”.",
    load_failed: "This file could not be opened as an image.",
    server_error: "The server could not analyse the photo (error {code}).",
    network_error: "Could not reach the server. Check the connection, or use “On this phone”.",
    err_upload_too_large: "The photo is too large for the server. Zoom in on the lesion and try again.",
    err_too_many_pixels: "The photo has too many pixels for the server. Zoom in on the lesion and try again.",
    err_empty_upload: "The photo was empty. Please choose it again.",
    err_not_an_image: "The server could not read this as a photo.",
    err_truncated_image: "The photo was incomplete. Please choose it again.",
    err_corrupt_image: "The photo is damaged and could not be read.",
    err_unreadable_image: "The server could not read this photo.",
    history_not_analysed: "Not analysed ({why})",
    why_too_small: "too small",
    why_too_dark: "too dark",
    why_little_skin: "too little skin",
    why_not_skin_like: "not a skin photo",
    history_uncertain: "Uncertain: see a dermatologist",
    training_counts: "{n} photos of {label}",
    switch_label: "Switch language",
    crop_label: "Drag to move, pinch or use the slider to zoom",
    gradcam_alt: "Heatmap of where the model looked",
  },
  zh: {
    switch_to: "EN",
    notice_title: "辅助决策工具，不是诊断。",
    notice_body: "本应用可能出错。皮肤病只能由医生诊断。",
    step_photo: "1. 拍摄皮肤照片",
    take_photo: "拍照",
    choose_photo: "选择照片",
    photo_hint: "近距离、自然光下拍摄，皮损放在画面中央，不要使用滤镜。",
    step_crop: "2. 框选皮损",
    zoom: "缩放",
    crop_hint: "拖动移动；双指捏合或滑动缩放。只分析方框内的部分。",
    mode: "在哪里运行模型",
    mode_browser: "在本机运行（保护隐私，可离线使用）",
    mode_server: "在服务器运行（照片会被发送，但不保存）",
    analyse: "分析",
    analysing: "正在分析…",
    step_result: "3. 结果",
    verdict_ok: "在本模型认识的类别中，最可能是：{label}（{p}）。",
    exam_sep: "：",
    verdict_low_confidence: "结果不确定：模型无法在其类别之间作出判断。请咨询皮肤科医生。",
    advice_low_confidence: "重新拍摄时：靠近一些，在自然光下，皮损放在画面中央，不要使用滤镜。",
    verdict_unsure_skin: "没有结果：这可能不是皮肤照片，或者是一张不寻常的照片。如果照片显示的是皮肤问题，请咨询皮肤科医生。",
    advice_unsure_skin: "重试时：直接拍摄皮肤，靠近一些，在自然光下，皮损放在画面中央，不要使用滤镜。",
    verdict_unusual_logits: "没有结果：模型在这张照片中没有认出任何它认识的内容。如果照片显示的是皮肤问题，请咨询皮肤科医生。",
    advice_unusual_logits: "重试时：直接拍摄皮肤，靠近一些，在自然光下，皮损放在画面中央，不要使用滤镜。",
    verdict_too_small: "未分析：框选的区域太小，无法判断（在照片中不足 {min} 个像素宽），此时给出的任何结果都只是猜测。",
    advice_too_small: "请缩小画面以框选更大的区域，或使用更大的照片（靠近拍摄，或使用原始分辨率）。",
    verdict_too_dark: "未分析：照片太暗，无法判断。",
    advice_too_dark: "请在光线更充足的地方重新拍摄，最好在自然光下，避免闪光灯反光。",
    verdict_little_skin: "未分析：方框内可见的皮肤太少。",
    advice_little_skin: "请移动或缩放，让皮肤占满方框的大部分。",
    verdict_not_skin_like: "未分析：这看起来像纹理、物体、屏幕或图画，而不是皮肤照片。",
    advice_not_skin_like: "请直接拍摄皮肤本身，不要拍物体、屏幕或图画：近距离，在自然光下。",
    candidates_title: "可能是以下任一种，可能性相同（模型无法选择）：",
    limits_title: "本模型无法告诉您的内容",
    limits_known: "本模型只认识：{classes}。",
    limits_condition: "它无法区分{label}和下面的相似疾病：它从未见过这些疾病，会把它们判为自己已知的某一类。以下检查可以鉴别：",
    limits_normal: "“{label}”并不能排除下面的疾病：模型从未见过它们。以下检查可以鉴别：",
    limits_generic: "它从未见过下面的疾病，会把它们判为自己已知的某一类。以下检查可以鉴别：",
    limits_other: "“{label}”不是任何具体病变的诊断；模型从未见过下面的色素减退性疾病，它们仍可能存在。以下检查可以鉴别：",
    see_doctor_exam: "这些检查只能由医生进行。",
    result_meta: "{where}计算，用时 {ms} 毫秒。",
    where_browser: "在本机",
    where_server: "在服务器",
    gradcam_caption: "模型给出“{label}”这一结果时关注的区域（Grad-CAM）：红色区域影响最大。热力图不是诊断。",
    gradcam_off: "没有热力图：此版本的模型无法显示它关注的区域。",
    lookalikes_title: "本模型无法识别的相似疾病",
    not_in_model: "本模型无法识别此疾病",
    card_what: "是什么",
    card_looks: "典型表现",
    card_apart: "如何鉴别",
    card_doctor: "何时就医",
    no_card: "没有“{label}”的信息卡。",
    history_title: "本机历史记录",
    history_hint: "仅保存在本机。服务器不保存任何图片。",
    history_empty: "暂无记录。",
    export_json: "导出 JSON",
    delete_all: "全部删除",
    delete_one: "删除",
    confirm_delete_all: "删除本机保存的所有记录？",
    api_docs: "API 文档",
    model_info: "模型 {name} {version}（{precision}）· 类别：{classes} · {data}",
    trained_split: "训练照片 {n} 张（{counts}），另有 {val} 张用于验证",
    held_out: "；另有 {test} 张留作测试",
    count_in_list: "{label} {n} 张",
    data_counts_only: "训练数据（含验证照片）：{data}",
    data_not_recorded: "训练数据：未记录",
    history_open: "重新查看此结果：{what}，{when}",
    past_result: "过去的结果（{when}，左侧的照片），从本机历史记录中重新打开：不是新的分析。",
    past_meta: "当时{where}计算。",
    stale_result: "这是之前的结果，不是您刚才请求的分析的结果：那次分析失败了（见上方提示）。",
    list_sep: "、",
    model_broken: "警告：此模型在制作时未通过质量检查（例如对每张照片都给出同一个答案）。请不要依赖它的结果。",
    runtime_missing: "此服务器不支持在浏览器中推理；照片将发送到服务器分析（服务器不保存副本）。",
    runtime_failed: "本机无法启动浏览器推理；照片将改为发送到服务器分析（服务器不保存副本）。",
    loading_progress: "正在本机准备：已下载 {done} / {total} MB（{pct}%）。只有第一次访问需要下载。",
    loading_starting: "正在本机准备…",
    getting_ready: "正在本机准备…",
    getting_ready_pct: "正在本机准备… {pct}%",
    runtime_failed_nothing_sent: "模型无法在本机启动，因此照片未被分析，也没有发送任何内容。如需改在服务器分析（照片会被发送，但不保存），请选择“在服务器运行”，再点击“分析”。",
    start_failed: "应用无法加载模型信息。请检查网络连接并重新加载页面。",
    unexpected_error: "分析照片时出错，请重试。",
    offline_server: "当前离线，无法使用服务器推理；请选择“在本机运行”。",
    load_failed: "无法将此文件作为图片打开。",
    server_error: "服务器无法分析这张照片（错误 {code}）。",
    network_error: "无法连接服务器。请检查网络，或选择“在本机运行”。",
    err_upload_too_large: "照片太大，服务器无法接收。请放大皮损部位后重试。",
    err_too_many_pixels: "照片像素过多，服务器无法处理。请放大皮损部位后重试。",
    err_empty_upload: "照片为空。请重新选择。",
    err_not_an_image: "服务器无法将其识别为照片。",
    err_truncated_image: "照片不完整。请重新选择。",
    err_corrupt_image: "照片已损坏，无法读取。",
    err_unreadable_image: "服务器无法读取这张照片。",
    history_not_analysed: "未分析（{why}）",
    why_too_small: "太小",
    why_too_dark: "太暗",
    why_little_skin: "皮肤太少",
    why_not_skin_like: "不像皮肤照片",
    history_uncertain: "结果不确定：请咨询皮肤科医生",
    training_counts: "{label} {n} 张",
    switch_label: "切换语言",
    crop_label: "拖动移动，双指捏合或用滑块缩放",
    gradcam_alt: "模型关注区域的热力图",
  },
};

const KEY = "hypoderm.lang";

export function initialLanguage() {
  const saved = localStorage.getItem(KEY);
  if (saved === "en" || saved === "zh") return saved;
  const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
  return langs[0].toLowerCase().startsWith("zh") ? "zh" : "en";
}

let current = "en";

export function setLanguage(lang) {
  current = lang === "zh" ? "zh" : "en";
  localStorage.setItem(KEY, current);
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  for (const el of document.querySelectorAll("[data-i18n]")) {
    el.textContent = t(el.dataset.i18n);
  }
  // Attributes people also read (screen readers, image descriptions): data-i18n-ATTR="key".
  for (const attr of ["aria-label", "alt"]) {
    for (const el of document.querySelectorAll(`[data-i18n-${attr}]`)) {
      el.setAttribute(attr, t(el.getAttribute(`data-i18n-${attr}`)));
    }
  }
}

export function language() {
  return current;
}

/** A date and time as people read them in `lang` (the history list, a reopened result). */
export function dateText(iso, lang) {
  return new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB");
}

/**
 * What data the model saw, from its metadata's training_data: how many photos trained it (per class) and how many
 * more validated it (and were held out for testing), e.g. "trained on 1,279 photos (Normal skin 570, ...); 320
 * more ...". Metadata with only per-class counts say those are the whole data set, not what it was trained on.
 */
export function trainingText(td, labelName) {
  const num = (n) => Number(n).toLocaleString(current === "zh" ? "zh-CN" : "en-GB");
  const listed = (counts, key) => Object.entries(counts).map(([label, n]) => t(key, { label: labelName(label), n: num(n) }))
    .join(t("list_sep"));
  if (Number.isInteger(td.n_train) && Number.isInteger(td.n_val) && td.train_counts) {
    const test = Number.isInteger(td.n_test) && td.n_test > 0 ? t("held_out", { test: num(td.n_test) }) : "";
    return t("trained_split", { n: num(td.n_train), counts: listed(td.train_counts, "count_in_list"), val: num(td.n_val) })
      + test;
  }
  if (td.counts && Object.keys(td.counts).length) return t("data_counts_only", { data: listed(td.counts, "training_counts") });
  return t("data_not_recorded");
}

/** The string for `key` in the current language, with {name} placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const s = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}
