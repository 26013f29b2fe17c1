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
    mode_server: "On the server (adds a heatmap)",
    analyse: "Analyse",
    analysing: "Analysing…",
    step_result: "3. Result",
    verdict_ok: "Most likely: {label} ({p}).",
    verdict_uncertain: "Uncertain — please see a dermatologist. (The best guess, {label} at {p}, is below the model's threshold of {t}.)",
    verdict_not_skin: "This does not look like a skin photo. Take a close, well-lit photo of the skin area.",
    result_meta: "Computed {where} in {ms} ms · skin-coloured pixels {skin}",
    where_browser: "on this device",
    where_server: "on the server",
    gradcam_caption: "Where the model looked (Grad-CAM): red areas weighed most.",
    gradcam_off: "Heatmap unavailable: {reason}",
    gradcam_browser: "The heatmap needs server inference.",
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
    model_info: "Model {name} {version} ({precision}) · classes: {classes} · trained on: {data}",
    not_recorded: "not recorded",
    runtime_missing: "In-browser inference is not available on this server; the photo will be sent to the server (it keeps no copy).",
    runtime_failed: "In-browser inference failed to start ({error}); using the server instead.",
    offline_server: "You are offline: server inference is not available; use “On this phone”.",
    load_failed: "This file could not be opened as an image.",
    server_error: "The server refused the photo: {detail}",
    network_error: "Could not reach the server: {detail}",
    status_ok: "result", status_uncertain: "uncertain", status_not_skin: "not skin",
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
    mode_server: "在服务器运行（附带热力图）",
    analyse: "分析",
    analysing: "正在分析…",
    step_result: "3. 结果",
    verdict_ok: "最可能：{label}（{p}）。",
    verdict_uncertain: "结果不确定——请咨询皮肤科医生。（最可能的{label}为 {p}，低于模型阈值 {t}。）",
    verdict_not_skin: "这看起来不像皮肤照片。请在光线充足处近距离拍摄皮肤部位。",
    result_meta: "{where}计算，用时 {ms} 毫秒 · 肤色像素 {skin}",
    where_browser: "在本机",
    where_server: "在服务器",
    gradcam_caption: "模型关注的区域（Grad-CAM）：红色区域影响最大。",
    gradcam_off: "热力图不可用：{reason}",
    gradcam_browser: "热力图需要使用服务器推理。",
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
    model_info: "模型 {name} {version}（{precision}）· 类别：{classes} · 训练数据：{data}",
    not_recorded: "未记录",
    runtime_missing: "此服务器不支持在浏览器中推理；照片将发送到服务器分析（服务器不保存副本）。",
    runtime_failed: "浏览器推理无法启动（{error}）；改用服务器。",
    offline_server: "当前离线，无法使用服务器推理；请选择“在本机运行”。",
    load_failed: "无法将此文件作为图片打开。",
    server_error: "服务器拒绝了这张照片：{detail}",
    network_error: "无法连接服务器：{detail}",
    status_ok: "结果", status_uncertain: "不确定", status_not_skin: "非皮肤",
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
}

export function language() {
  return current;
}

/** The string for `key` in the current language, with {name} placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const s = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (k in vars ? String(vars[k]) : `{${k}}`));
}
