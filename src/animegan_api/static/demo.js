// The demo page: everything it needs comes from this app (no CDN, no build step).
"use strict";
const $ = (id) => document.getElementById(id);
let photo = null;
let resultUrl = null;

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function choose(file) {
  if (!file) return;
  photo = file;
  $("drop-text").textContent = file.name;
  $("before").src = URL.createObjectURL(file);
  $("go").disabled = !$("style").value;
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

function convert(event) {
  event.preventDefault();
  if (!photo) return;
  $("error").hidden = true;
  $("go").disabled = true;
  $("progress").hidden = false;
  $("bar-fill").style.width = "0";
  const form = new FormData();
  form.append("image", photo);
  form.append("style", $("style").value);
  form.append("max_side", $("max-side").value);
  const request = new XMLHttpRequest();
  const started = performance.now();
  const ticker = setInterval(() => {
    if ($("bar-fill").style.width === "100%") {
      $("progress-text").textContent = `Converting… ${((performance.now() - started) / 1000).toFixed(1)} s`;
    }
  }, 200);
  request.open("POST", "/v1/transform");
  request.responseType = "blob";
  request.upload.onprogress = (e) => {
    if (e.lengthComputable) $("bar-fill").style.width = `${Math.round((100 * e.loaded) / e.total)}%`;
  };
  request.onloadend = async () => {
    clearInterval(ticker);
    $("progress").hidden = true;
    $("go").disabled = false;
    if (request.status === 200) {
      if (resultUrl) URL.revokeObjectURL(resultUrl);
      resultUrl = URL.createObjectURL(request.response);
      $("after").src = resultUrl;
      $("download").href = resultUrl;
      $("download").download = photo.name.replace(/\.[^.]*$/, "") + "-anime.png";
      $("timing").textContent = request.getResponseHeader("Server-Timing") || "";
      $("result").hidden = false;
    } else if (request.status === 0) {
      showError("The server could not be reached.");
    } else {
      let message = `HTTP ${request.status}`;
      try {
        const body = JSON.parse(await request.response.text());
        message = body.error ? body.error.message : JSON.stringify(body.detail);
      } catch (_) { /* not JSON: keep the status line */ }
      showError(message);
    }
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
$("form").addEventListener("submit", convert);
loadStyles();
