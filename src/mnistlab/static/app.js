// The drawing page: strokes on a canvas → POST /api/predict → bars, the 28×28 input, the answer.
//
// The drawing is sent as an uncompressed 8-bit gray BMP made here from the canvas's pixels, half size
// (140×140, 21 KB): `canvas.toBlob` would wait for the browser to be idle (about a second in Chromium),
// and the server decodes a BMP for next to nothing. At most one request is in flight; every change
// to the drawing (a new stroke, Undo, Clear) aborts it, so an answer to an erased drawing never shows.
"use strict";

// A 24 px brush on the 280 px canvas: a digit drawn 150-220 px tall comes out 2.2-3.2 px wide at
// MNIST's 20 px scale, inside MNIST's range (2.0-4.4 px), so preprocessing need not redraw it.
const BRUSH = 24;
const THROTTLE_MS = 80; // while drawing, ask again at most this often
const SENT_SIZE = 140; // the drawing goes to the server at half the canvas's size: plenty for a 28×28 input
const MIME_TYPES = ["image/png", "image/jpeg", "image/bmp", "image/gif", "image/webp", "image/tiff"];

const canvas = document.getElementById("canvas");
const ctx = canvas.getContext("2d");
const result = document.getElementById("result");
const seen = document.getElementById("seen");
const bars = document.getElementById("bars");
const drop = document.getElementById("drop");

let strokes = []; // each stroke: a list of [x, y] in canvas pixels
let uploaded = null; // {file, bitmap} when the last input was an uploaded image
let drawing = null; // the stroke under the pointer
let timer = null;
let asked = 0; // drawings asked about, so that a slow answer to an older drawing is ignored
let inFlight = null; // the AbortController of the request under way
let lastSent = 0; // when the last request left (performance.now())
let pending = false; // the drawing changed while a request was in flight: ask again when it returns
let classes = Array.from({length: 10}, (_, digit) => String(digit)); // the model's class names (/api/model)

// The pointer's place in `pad`'s own pixels (the pad may be drawn smaller or larger than it is): number mode's too.
function padPoint(pad, event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * pad.width / box.width, (event.clientY - box.top) * pad.height / box.height];
}

function point(event) {
  return padPoint(canvas, event);
}

// Black strokes `brush` pixels wide, round at the ends and joins; a stroke of one point is a dot: number mode's too.
function drawStrokes(context, strokes, brush) {
  context.strokeStyle = context.fillStyle = "#000";
  context.lineWidth = brush;
  context.lineCap = context.lineJoin = "round";
  for (const stroke of strokes) {
    context.beginPath();
    if (stroke.length === 1) {
      context.arc(stroke[0][0], stroke[0][1], brush / 2, 0, 2 * Math.PI);
      context.fill();
      continue;
    }
    context.moveTo(...stroke[0]);
    for (const p of stroke.slice(1)) context.lineTo(...p);
    context.stroke();
  }
}

function redraw() {
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  if (uploaded && uploaded.bitmap) {
    const {bitmap} = uploaded;
    const scale = Math.min(canvas.width / bitmap.width, canvas.height / bitmap.height);
    const w = bitmap.width * scale, h = bitmap.height * scale;
    ctx.drawImage(bitmap, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  }
  drawStrokes(ctx, strokes, BRUSH);
}

function isEmpty() {
  return strokes.length === 0 && !uploaded;
}

// --- drawing with mouse, pen or finger ---------------------------------------------------------------
canvas.addEventListener("pointerdown", (event) => {
  if (event.button !== 0) return;
  event.preventDefault();
  canvas.setPointerCapture(event.pointerId);
  if (uploaded) uploaded = null; // drawing starts afresh over an uploaded picture
  drawing = [point(event)];
  strokes.push(drawing);
  redraw();
});
canvas.addEventListener("pointermove", (event) => {
  if (!drawing) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const e of (events.length ? events : [event])) drawing.push(point(e));
  redraw();
  throttle();
});
function endStroke() {
  if (!drawing) return;
  drawing = null;
  predictNow(); // at once: the answer to the whole drawing must not wait for the throttle
}
canvas.addEventListener("pointerup", endStroke);
canvas.addEventListener("pointercancel", endStroke);

// --- buttons and keys -----------------------------------------------------------------------------------
function undo() {
  cancel();
  if (uploaded) uploaded = null;
  else strokes.pop();
  redraw();
  predictNow();
}
function clear() {
  cancel();
  strokes = [];
  uploaded = null;
  redraw();
  predictNow();
}
document.getElementById("undo").addEventListener("click", undo);
document.getElementById("clear").addEventListener("click", clear);
document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || document.getElementById("digit-mode").hidden) return;
  if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
    event.preventDefault();
    undo();
  } else if (event.key === "Escape") {
    clear();
  }
});

// --- uploads: the file button and drag-and-drop ------------------------------------------------------
async function useFile(file) {
  if (!file) return;
  cancel();
  const bitmap = await createImageBitmap(file).catch(() => null); // TIFF, say: the server may still read it
  strokes = [];
  uploaded = {file, bitmap};
  redraw();
  const form = new FormData();
  form.append("file", file, file.name);
  ask(form);
}
const fileInput = document.getElementById("file");
fileInput.addEventListener("change", () => {
  useFile(fileInput.files[0]);
  fileInput.value = ""; // choosing the same file again still counts
});
drop.addEventListener("dragover", (event) => {
  event.preventDefault();
  drop.classList.add("over");
});
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  useFile(event.dataTransfer.files[0]);
});

// --- asking the server ---------------------------------------------------------------------------------
function throttle() { // while drawing: at most one request in flight, and one every THROTTLE_MS
  if (inFlight) {
    pending = true;
    return;
  }
  if (timer !== null) return;
  const wait = Math.max(0, THROTTLE_MS - (performance.now() - lastSent));
  timer = setTimeout(() => {
    timer = null;
    if (drawing) predictNow();
  }, wait);
}

// A canvas as an 8-bit gray BMP `width` pixels wide (its height in proportion): built synchronously from its
// pixels, no encoder to wait on. read.js sends the number pad's drawing the same way.
function canvasBmp(width, source = canvas) {
  const height = Math.round(width * source.height / source.width);
  const small = document.createElement("canvas");
  small.width = width;
  small.height = height;
  const context = small.getContext("2d", {willReadFrequently: true});
  context.imageSmoothingQuality = "high";
  context.drawImage(source, 0, 0, width, height);
  const rgba = context.getImageData(0, 0, width, height).data;
  const row = (width + 3) & ~3; // BMP rows are padded to 4 bytes
  const offset = 14 + 40 + 256 * 4; // file header, info header, gray palette
  const buffer = new ArrayBuffer(offset + row * height);
  const view = new DataView(buffer);
  view.setUint16(0, 0x4d42, true); // "BM"
  view.setUint32(2, buffer.byteLength, true);
  view.setUint32(10, offset, true);
  view.setUint32(14, 40, true);
  view.setInt32(18, width, true);
  view.setInt32(22, -height, true); // negative: rows top to bottom
  view.setUint16(26, 1, true);
  view.setUint16(28, 8, true);
  view.setUint32(34, row * height, true);
  view.setUint32(46, 256, true);
  for (let i = 0; i < 256; i++) view.setUint32(54 + 4 * i, i * 0x010101, true);
  const pixels = new Uint8Array(buffer, offset);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const k = 4 * (y * width + x);
      pixels[y * row + x] = (rgba[k] * 77 + rgba[k + 1] * 150 + rgba[k + 2] * 29) >> 8;
    }
  }
  return new Blob([buffer], {type: "image/bmp"});
}

function cancel() { // the drawing changed: no answer under way may show
  asked++;
  pending = false;
  clearTimeout(timer);
  timer = null;
  if (inFlight) inFlight.abort();
  inFlight = null;
}

function predictNow() {
  cancel();
  if (uploaded) return; // an upload was already sent as it is
  if (isEmpty()) {
    show(null, "Draw a digit to see what the model reads.");
    return;
  }
  ask(canvasBmp(SENT_SIZE));
}

async function ask(body) {
  const mine = ++asked;
  const controller = new AbortController();
  inFlight = controller;
  lastSent = performance.now();
  let response, answer;
  try {
    const headers = body instanceof Blob ? {"Content-Type": body.type || "application/octet-stream"} : {};
    response = await fetch("/api/predict?preprocessed=true", {method: "POST", body, headers,
                                                              signal: controller.signal});
    answer = await response.json();
  } catch {
    if (mine === asked) show(null, "The server cannot be reached. Is mnistlab serve still running?", true);
    return;
  } finally {
    if (inFlight === controller) {
      inFlight = null;
      if (pending && drawing) throttle();
      pending = false;
    }
  }
  if (mine !== asked) return; // the drawing changed since
  if (response.ok) show(answer);
  else show(null, refusalText(response.status, answer.detail), true);
}

// The page's one-line reason for an image the server refused (learn mode says the same).
function refusalText(status, detail) {
  if (status === 422 && /draw it larger/.test(detail)) return "Draw it larger: that mark is too small or too faint to be a digit.";
  if (status === 422) return "No digit found: draw it larger or bolder.";
  return `The server refused it: ${detail}`;
}

function percent(p) {
  return `${(100 * p).toFixed(p >= 0.9995 || p < 0.0005 ? 0 : 1)}%`;
}

function show(answer, message, isError = false) {
  result.classList.toggle("error", isError);
  if (!answer) {
    result.textContent = message;
    seen.removeAttribute("src");
    seen.alt = "";
    bars.classList.remove("refused");
    renderBars(null);
    return;
  }
  result.innerHTML = "";
  bars.classList.toggle("refused", answer.label === null);
  if (answer.label === null) {  // the server's reject rule: "not a digit" (mnistlab serve --reject)
    result.textContent = "That does not look like a digit";
    seen.src = `data:image/png;base64,${answer.preprocessed}`;
    seen.alt = "The 28 by 28 pixel image the model read as no digit";
    renderBars(answer);
    return;
  }
  const name = answer.class ?? String(answer.label);
  const digit = document.createElement("strong");
  digit.textContent = name;
  digit.setAttribute("aria-hidden", "true");
  const text = document.createElement("span");
  text.textContent = `The model reads ${name} (${percent(answer.confidence)} sure)`;
  result.append(digit, text);
  seen.src = `data:image/png;base64,${answer.preprocessed}`;
  seen.alt = `The 28 by 28 pixel image the model read as ${name}`;
  renderBars(answer);
}

function renderBars(answer) {
  bars.replaceChildren(...Array.from({length: 10}, (_, digit) => {
    const p = answer ? answer.probabilities[digit] : 0;
    const item = document.createElement("li");
    item.className = answer && digit === answer.label ? "winner" : "";
    item.innerHTML = '<span class="digit"></span><span class="track"><span class="fill"></span></span>' +
                     '<span class="value"></span>';
    item.querySelector(".digit").textContent = classes[digit];
    item.querySelector(".fill").style.width = `${100 * p}%`;
    item.querySelector(".value").textContent = answer ? percent(p) : "–";
    item.setAttribute("aria-label",
                      answer ? `${classes[digit]}: ${percent(p)}${item.className ? ", the answer" : ""}` : classes[digit]);
    return item;
  }));
}

// --- collecting labelled drawings (mnistlab serve --collect DIR) --------------------------------------
async function collect(label) {
  const status = document.getElementById("collect-status");
  if (isEmpty()) {
    status.textContent = "Draw a digit first.";
    return;
  }
  const body = uploaded ? uploaded.file : canvasBmp(canvas.width); // the drawing at full size
  const headers = {"Content-Type": MIME_TYPES.includes(body.type) ? body.type : "application/octet-stream"};
  try {
    const response = await fetch(`/api/collect?label=${label}`, {method: "POST", body, headers});
    const answer = await response.json();
    status.textContent = response.ok ? `Saved as ${answer.file}.` : `Not saved: ${answer.detail}`;
    if (response.ok) {
      clear();
      loadCollected();
    }
  } catch {
    status.textContent = "Not saved: the server cannot be reached.";
  }
}

// How many drawings of each class the folder holds, and the commands that use them.
async function loadCollected() {
  let info;
  try {
    info = await (await fetch("/api/collected")).json();
  } catch {
    return;
  }
  const counts = document.getElementById("collected-counts");
  counts.replaceChildren(...info.counts.map((n, label) => {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = "digit";
    name.textContent = classes[label];
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = String(n);
    item.append(name, count);
    item.setAttribute("aria-label", `${classes[label]}: ${n} saved`);
    return item;
  }));
  document.getElementById("collected-total").textContent =
    `${info.total} drawing${info.total === 1 ? "" : "s"} saved. When you have some of each, run:`;
  document.getElementById("collected-commands").textContent = info.commands.join("\n");
}

function describeModel(info) { // the header's line (learn mode adds which model answers)
  const accuracy = info.test_accuracy == null ? "no recorded test accuracy" :
    `test accuracy ${(100 * info.test_accuracy).toFixed(2)}%`;
  return `Model: ${info.name} (${info.architecture}, ${accuracy})`;
}

async function loadModel() {
  const info = await (await fetch("/api/model")).json();
  document.getElementById("model").textContent = describeModel(info);
  if (Array.isArray(info.classes) && info.classes.length === 10) {
    classes = info.classes.map(String);
    // Names longer than a digit (Fashion-MNIST's "Ankle boot") get a wider label column.
    bars.classList.toggle("named", classes.some((name) => name.length > 1));
    renderBars(null);
  }
  if (info.collect) {
    const group = document.getElementById("collect-buttons");
    for (let digit = 0; digit < 10; digit++) {
      const button = document.createElement("button");
      button.type = "button";
      const name = classes[digit];
      button.textContent = name;
      button.setAttribute("aria-label", name === String(digit) ? `This is a ${digit}: save the drawing as a ${digit}` :
                          `This is ${name}: save the drawing under ${name} (class ${digit})`);
      button.addEventListener("click", () => collect(digit));
      group.append(button);
    }
    document.getElementById("collect").hidden = false;
    loadCollected();
  }
}

redraw();
renderBars(null);
loadModel();
