// Number mode: a wide pad where a whole number is written → POST /api/read → a box and a reading over each digit.
//
// The drawing goes when the pen lifts (and on Undo or Clear), as an 8-bit gray BMP at half size (app.js's
// `canvasBmp`); the boxes come back in the sent picture's pixels and are drawn over the pad. Every change to the
// drawing aborts the request under way, so the boxes of an erased drawing never show.
"use strict";

(() => {
  const NUMBER_BRUSH = 24; // the digit pad's brush: the pad is as tall as the digit pad, so digits come out alike
  const NUMBER_SENT_WIDTH = 420; // half the pad's width, as the digit pad sends half its size
  const PROMPT = "Write a number to see what the model reads.";

  const pad = document.getElementById("number-canvas");
  const context = pad.getContext("2d");
  const boxes = document.getElementById("number-boxes");
  const result = document.getElementById("number-result");
  const digitList = document.getElementById("number-digits");
  const modes = {digit: document.getElementById("digit-mode"), number: document.getElementById("number-mode")};

  let strokes = []; // each stroke: a list of [x, y] in the pad's pixels
  let drawing = null;
  let asked = 0; // drawings asked about: an answer to an older drawing is ignored
  let inFlight = null;

  function setMode(name) {
    for (const [mode, element] of Object.entries(modes)) {
      element.hidden = mode !== name;
      document.getElementById(`mode-${mode}`).setAttribute("aria-pressed", String(mode === name));
    }
    document.querySelector("h1").textContent = name === "number" ? "Write a number" : "Draw a digit";
    document.body.dataset.mode = name; // learn mode's toggle belongs to the digit pad: style.css hides it here
  }
  document.getElementById("mode-digit").addEventListener("click", () => setMode("digit"));
  document.getElementById("mode-number").addEventListener("click", () => setMode("number"));

  function point(event) {
    return padPoint(pad, event);
  }

  function redraw() {
    context.fillStyle = "#fff";
    context.fillRect(0, 0, pad.width, pad.height);
    drawStrokes(context, strokes, NUMBER_BRUSH);
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    drawing = [point(event)];
    strokes.push(drawing);
    cancel();
    redraw();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const e of (events.length ? events : [event])) drawing.push(point(e));
    redraw();
  });
  function endStroke() {
    if (!drawing) return;
    drawing = null;
    readNow();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  function undo() {
    strokes.pop();
    redraw();
    readNow();
  }
  function clear() {
    strokes = [];
    redraw();
    readNow();
  }
  document.getElementById("number-undo").addEventListener("click", undo);
  document.getElementById("number-clear").addEventListener("click", clear);
  document.addEventListener("keydown", (event) => {
    if (modes.number.hidden || event.target instanceof HTMLInputElement) return;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === "z") {
      event.preventDefault();
      undo();
    } else if (event.key === "Escape") {
      clear();
    }
  });

  function cancel() { // the drawing changed: no answer under way may show
    asked++;
    if (inFlight) inFlight.abort();
    inFlight = null;
    show(null, strokes.length ? "Reading…" : PROMPT);
  }

  async function readNow() {
    cancel();
    if (!strokes.length) return;
    const mine = asked;
    const controller = new AbortController();
    inFlight = controller;
    let response, answer;
    try {
      response = await fetch("/api/read", {method: "POST", body: canvasBmp(NUMBER_SENT_WIDTH, pad),
                                           headers: {"Content-Type": "image/bmp"}, signal: controller.signal});
      answer = await response.json();
    } catch {
      if (mine === asked) show(null, "The server cannot be reached. Is mnistlab serve still running?", true);
      return;
    } finally {
      if (inFlight === controller) inFlight = null;
    }
    if (mine !== asked) return;
    if (response.ok) show(answer);
    else if (response.status === 422 && /do not look like digits/.test(answer.detail || ""))
      show(null, "That does not look like a number.", true);
    else if (response.status === 422) show(null, "No number found: write the digits larger, side by side.", true);
    else show(null, `The server refused it: ${answer.detail}`, true);
  }

  function percent(p) {
    return `${(100 * p).toFixed(p >= 0.9995 || p < 0.0005 ? 0 : 1)}%`;
  }

  function show(answer, message, isError = false) {
    result.classList.toggle("error", isError);
    boxes.replaceChildren();
    digitList.replaceChildren();
    if (!answer) {
      result.textContent = message;
      return;
    }
    const number = document.createElement("strong");
    number.id = "number-text";
    number.textContent = answer.text;
    result.replaceChildren(number, document.createTextNode(`The model reads ${answer.text}`));
    // The sent picture's pixels → percent of the pad's width and height (canvasBmp keeps the pad's proportions).
    const scale = 100 / NUMBER_SENT_WIDTH;
    const tall = 100 / Math.round(NUMBER_SENT_WIDTH * pad.height / pad.width);
    for (const {label, confidence, box: [x0, y0, x1, y1]} of answer.digits) {
      const frame = document.createElement("div");
      frame.className = "digit-box";
      Object.assign(frame.style, {left: `${x0 * scale}%`, top: `${y0 * tall}%`,
                                  width: `${(x1 - x0) * scale}%`, height: `${(y1 - y0) * tall}%`});
      const tag = document.createElement("span");
      tag.textContent = `${label} · ${percent(confidence)}`;
      frame.append(tag);
      boxes.append(frame);
      const item = document.createElement("li");
      item.textContent = `${label}: ${percent(confidence)} sure`;
      digitList.append(item);
    }
  }

  redraw();
})();
