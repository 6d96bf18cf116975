// The demo page: everything it needs comes from this app (no CDN, no build step).
"use strict";
const $ = (id) => document.getElementById(id);
let photo = null;
let resultUrl = null;
let job = null; // the running job: { id, events }
let faces = { boxes: [], chosen: -1 }; // the last avatar answer's X-Face-Boxes and X-Face-Index, drawn as buttons

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

function choose(file) {
  if (!file) return;
  photo = file;
  $("drop-text").textContent = file.name;
  const url = URL.createObjectURL(file);
  $("before").src = url;
  $("faces-photo").src = url;
  resetFaces();
  $("go").disabled = !$("style").value;
}

function switchMode() {
  const avatar = mode() === "avatar";
  $("face-field").hidden = !avatar;
  $("result").hidden = true;
  $("avatar-result").hidden = true;
  $("faces-view").hidden = true;
  $("job-result").hidden = true;
  $("file").accept = mode() === "job" ? "video/*,.zip,application/zip,image/*" : "image/*";
  $("go").textContent = avatar ? "Make avatar" : mode() === "job" ? "Start job" : "Convert";
}

async function loadStyles() {
  try {
    const response = await fetch("/v1/styles");
    const body = await response.json();
    if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
    for (const style of body.styles) {
      const option = new Option(style.display_name || style.name, style.name, style.default, style.default);
      option.disabled = !style.available;
      $("style").add(option);
    }
  } catch (err) {
    showError("Could not load styles: " + err.message);
  }
}

// "decode;dur=29.9, queue;dur=0.3, ..." in words: the whole time, and the wait when it matters.
function seconds(ms) {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function describeTiming(header, cache) {
  const parts = {};
  for (const item of (header || "").split(",")) {
    const [name, duration] = item.trim().split(";dur=");
    if (duration !== undefined) parts[name] = parseFloat(duration);
  }
  const total = Object.values(parts).reduce((sum, ms) => sum + ms, 0);
  if (cache === "hit") return `Ready in ${seconds(total)} (made before)`;
  const waited = parts.queue || 0;
  const words = `Styled in ${seconds(total)}`;
  return waited >= 500 ? `${words}, ${seconds(waited)} of it waiting for a free worker` : words;
}

function resetFaces() {
  faces = { boxes: [], chosen: -1 };
  for (const box of document.querySelectorAll(".face-box")) box.remove();
  const select = $("face");
  while (select.options.length > 1) select.remove(1);
  select.value = "largest";
}

function placeBoxes() {
  for (const old of document.querySelectorAll(".face-box")) old.remove();
  const image = $("faces-photo");
  if (!image.naturalWidth) return;
  const scale = image.clientWidth / image.naturalWidth;
  faces.boxes.forEach(([left, top, width, height], index) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "face-box" + (index === faces.chosen ? " chosen" : "");
    button.setAttribute("aria-label", `face ${index + 1}`);
    Object.assign(button.style, {
      left: `${left * scale}px`, top: `${top * scale}px`, width: `${width * scale}px`, height: `${height * scale}px`,
    });
    button.innerHTML = `<span>${index + 1}</span>`;
    button.addEventListener("click", () => { $("face").value = String(index); send(); });
    $("faces").append(button);
  });
}

function showFaces(request) {
  const boxes = (request.getResponseHeader("X-Face-Boxes") || "").split(";").filter(Boolean);
  const chosen = Number(request.getResponseHeader("X-Face-Index"));
  faces = { boxes: boxes.map((box) => box.split(",").map(Number)), chosen };
  const select = $("face");
  if (select.options.length - 1 !== boxes.length) {
    while (select.options.length > 1) select.remove(1);
    boxes.forEach((_, index) => select.add(new Option(`Face ${index + 1}`, String(index))));
  }
  if (select.value !== "largest") select.value = String(faces.chosen);
  $("faces-text").textContent = boxes.length === 1 ? "1 face found."
    : `${boxes.length} faces found; showing face ${faces.chosen + 1}. Tap another face to use it.`;
  $("faces-view").hidden = false;
  placeBoxes();
}

function finished(request, avatar) {
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = URL.createObjectURL(request.response);
  const timing = describeTiming(request.getResponseHeader("Server-Timing"), request.getResponseHeader("X-Cache"));
  const stem = photo.name.replace(/\.[^.]*$/, "");
  if (avatar) {
    $("avatar").src = resultUrl;
    $("avatar-download").href = resultUrl;
    $("avatar-download").download = `${stem}-avatar.png`;
    $("avatar-timing").textContent = timing;
    $("avatar-result").hidden = false;
    showFaces(request);
  } else {
    $("after").src = resultUrl;
    $("download").href = resultUrl;
    $("download").download = `${stem}-anime.png`;
    $("timing").textContent = timing;
    $("result").hidden = false;
  }
}

async function failed(request) {
  if (request.status === 0) return showError("The server could not be reached.");
  let message = `HTTP ${request.status}`;
  try {
    const body = JSON.parse(await request.response.text());
    message = body.error ? body.error.message : JSON.stringify(body.detail);
  } catch (_) { /* not JSON: keep the status line */ }
  showError(message);
}

// Video or batch: submit a job, follow its events stream with the bar, then play (or offer) the result.
function jobProgress(doc) {
  const unit = doc.kind === "video" ? "frames" : "pictures";
  $("bar-fill").style.width = `${Math.round(100 * doc.progress)}%`;
  if (doc.status === "queued") {
    $("progress-text").textContent = `Queued (position ${doc.queue_position})`;
  } else if (doc.status === "running") {
    const left = doc.eta_s === null ? "" : `, about ${Math.ceil(doc.eta_s)} s left`;
    $("progress-text").textContent = `Converting… ${doc.done} / ${doc.total} ${unit}${left}`;
  }
}

function jobEnded(doc) {
  job.events.close();
  job = null;
  $("progress").hidden = true;
  $("cancel").hidden = true;
  $("go").disabled = false;
  if (doc.status === "failed") return showError(doc.error.message);
  if (doc.status === "canceled") return showError("The job was canceled.");
  const seconds = (Date.parse(doc.finished_at) - Date.parse(doc.started_at)) / 1000;
  $("job-timing").textContent = `${doc.done} ${doc.kind === "video" ? "frames" : "pictures"} in ${seconds.toFixed(1)} s`;
  $("job-download").href = doc.result.url;
  $("job-items").replaceChildren(...(doc.items || []).map((item) => {
    const line = document.createElement("li");
    line.textContent = item.error ? `${item.name}: ${item.error.message}` : item.name;
    if (item.error) line.className = "failed";
    return line;
  }));
  const video = doc.kind === "video";
  $("job-source").parentElement.hidden = !video;
  $("job-video").parentElement.hidden = !video;
  if (video) {
    $("job-source").src = URL.createObjectURL(photo);
    $("job-video").src = doc.result.url;
  }
  $("job-result").hidden = false;
}

function follow(doc) {
  job = { id: doc.id, events: new EventSource(`/v1/jobs/${doc.id}/events`) };
  $("cancel").hidden = false;
  jobProgress(doc);
  job.events.onmessage = (event) => {
    const current = JSON.parse(event.data);
    if (["succeeded", "failed", "canceled"].includes(current.status)) jobEnded(current);
    else jobProgress(current);
  };
}

function cancelJob() {
  if (job) fetch(`/v1/jobs/${job.id}`, { method: "DELETE" });
}

function submitJob() {
  $("error").hidden = true;
  $("job-result").hidden = true;
  $("go").disabled = true;
  $("progress").hidden = false;
  $("progress-text").textContent = "Uploading…";
  $("bar-fill").style.width = "0";
  const form = new FormData();
  form.append("file", photo);
  form.append("style", $("style").value);
  form.append("max_side", $("max-side").value);
  const request = new XMLHttpRequest();
  request.open("POST", "/v1/jobs");
  request.responseType = "blob";
  request.upload.onprogress = (e) => {
    if (e.lengthComputable) $("bar-fill").style.width = `${Math.round((100 * e.loaded) / e.total)}%`;
  };
  request.onloadend = async () => {
    if (request.status === 202 || request.status === 200) return follow(JSON.parse(await request.response.text()));
    $("progress").hidden = true;
    $("go").disabled = false;
    await failed(request);
  };
  request.send(form);
}

function send() {
  if (!photo) return;
  if (mode() === "job") return submitJob();
  const avatar = mode() === "avatar";
  $("error").hidden = true;
  $("go").disabled = true;
  $("progress").hidden = false;
  $("bar-fill").style.width = "0";
  const form = new FormData();
  form.append("image", photo);
  form.append("style", $("style").value);
  form.append(avatar ? "size" : "max_side", $("max-side").value);
  if (avatar) form.append("face", $("face").value);
  const request = new XMLHttpRequest();
  const started = performance.now();
  const ticker = setInterval(() => {
    if ($("bar-fill").style.width === "100%") {
      $("progress-text").textContent = `Converting… ${((performance.now() - started) / 1000).toFixed(1)} s`;
    }
  }, 200);
  request.open("POST", avatar ? "/v1/avatar" : "/v1/transform");
  request.responseType = "blob";
  request.upload.onprogress = (e) => {
    if (e.lengthComputable) $("bar-fill").style.width = `${Math.round((100 * e.loaded) / e.total)}%`;
  };
  request.onloadend = async () => {
    clearInterval(ticker);
    $("progress").hidden = true;
    $("go").disabled = false;
    if (request.status === 200) finished(request, avatar);
    else await failed(request);
  };
  request.send(form);
}

$("file").addEventListener("change", (e) => choose(e.target.files[0]));
$("drop").addEventListener("dragover", (e) => { e.preventDefault(); $("drop").classList.add("over"); });
$("drop").addEventListener("dragleave", () => $("drop").classList.remove("over"));
$("drop").addEventListener("drop", (e) => {
  e.preventDefault();
  $("drop").classList.remove("over");
  choose(e.dataTransfer.files[0]);
});
$("slider").addEventListener("input", (e) => { $("after").style.clipPath = `inset(0 0 0 ${e.target.value}%)`; });
for (const radio of document.querySelectorAll("input[name=mode]")) radio.addEventListener("change", switchMode);
$("face").addEventListener("change", send);
$("cancel").addEventListener("click", cancelJob);
$("form").addEventListener("submit", (event) => { event.preventDefault(); send(); });
$("faces-photo").addEventListener("load", placeBoxes);
window.addEventListener("resize", placeBoxes);
loadStyles();
