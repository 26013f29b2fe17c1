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
    exam_sep: ": ",
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
    gradcam_caption: "Where the model looked when it answered “{label}” (Grad-CAM): red areas weighed most. The map is coarse: it shows roughly where, not the edge of a patch. A heat map is not a diagnosis.",
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
    err_bad_aspect_ratio: "The photo is too long and thin. Frame a squarer area of the skin and try again.",
    err_server_busy: "The server is busy with other photos. Wait a moment and try again, or use “On this phone”.",
    err_too_many_uploads: "Too many photos sent in a short time. Wait a minute and try again, or use “On this phone”.",
    err_upload_timeout: "The photo took too long to arrive. Check the connection and try again.",
    err_upload_chunks_too_small: "The connection was too slow to send the photo. Try again on a better connection, or use “On this phone”.",
    err_client_disconnected: "The connection broke while the photo was being sent. Please try again.",
    err_bad_content_length: "The browser sent the photo in a form the server does not accept. Reload the page and try again.",
    err_unsupported_content_type: "The browser sent the photo in a form the server does not accept. Reload the page and try again.",
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
    exam_sep: "：",
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
    gradcam_caption: "模型给出“{label}”这一结果时关注的区域（Grad-CAM）：红色区域影响最大。热力图较粗略：只显示大致位置，不显示斑片的边缘。热力图不是诊断。",
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
    err_bad_aspect_ratio: "照片过于细长。请框选更接近方形的皮肤区域后重试。",
    err_server_busy: "服务器正在处理其他照片。请稍候重试，或选择“在本机运行”。",
    err_too_many_uploads: "短时间内发送的照片过多。请等一分钟后重试，或选择“在本机运行”。",
    err_upload_timeout: "照片传输时间过长。请检查网络连接后重试。",
    err_upload_chunks_too_small: "网络太慢，照片无法发送。请换用更好的网络后重试，或选择“在本机运行”。",
    err_client_disconnected: "发送照片时连接中断。请重试。",
    err_bad_content_length: "浏览器发送照片的方式不被服务器接受。请重新加载页面后重试。",
    err_unsupported_content_type: "浏览器发送照片的方式不被服务器接受。请重新加载页面后重试。",
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
  translatePage();
}

/** The verdict texts by reason and status (hypoderm.inference.verdict), one file for the page, the API and
 * `hypoderm predict`: messages.json ({"en": {key: text}, "zh": ...}) joins the strings above. */
export function useMessages(messages) {
  for (const lang of Object.keys(STRINGS)) Object.assign(STRINGS[lang], messages[lang] || {});
}

/** Fetch /static/data/messages.json (cached for offline use by the service worker) and use it. */
export async function loadMessages() {
  const res = await fetch("/static/data/messages.json");
  if (!res.ok) throw new Error(`/static/data/messages.json answered ${res.status}`);
  useMessages(await res.json());
  translatePage();
}

function translatePage() {
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
