// Learn mode: the page asks for each digit in turn, saves every drawing under the digit asked for,
// teaches the served model the person's handwriting in the background, shows before and after, and
// switches between the learned and the original model.
//
// It drives the pad of app.js (its functions canvasBmp, isEmpty, clear, refusalText, describeModel; its names
// classes and canvas) and the server's learn routes, and appears only when the server learns (`mnistlab serve
// --collect DIR`). A module, so that its own names stay apart from app.js's globals.

const POLL_MS = 500; // how often the page asks how learning goes while it runs

const learn = {
  section: document.getElementById("learn"),
  toggle: document.getElementById("learn-toggle"),
  counts: Array(10).fill(0),
  wanted: 10, // drawings a digit the page asks for, and the least it needs: the server's (/api/collected)
  minimum: 5,
  asked: 0, // the digit the page asks for now
  saved: [], // the files saved in this visit, newest last, for "Undo last save"
  running: false, // a learning job is under way
  saving: false, // a save is on its way
  poll: null,
  model: null, // /api/model's answer
};

// Static markup (no user data goes into it), kept here so that index.html only holds the section.
learn.section.innerHTML = `
  <h2 id="learn-title">Learn my handwriting</h2>
  <p id="learn-prompt" class="prompt" aria-live="polite"></p>
  <p class="muted" id="learn-help">Draw the digit asked for on the pad, then save it (Enter on the pad).
    Each drawing is saved under the digit asked for, even when the model reads another one.</p>
  <div class="buttons">
    <button type="button" id="learn-save" aria-describedby="learn-help"></button>
    <button type="button" id="learn-next">Ask for another digit</button>
    <button type="button" id="learn-undo" disabled>Undo last save</button>
  </div>
  <p id="learn-status" class="muted" role="status"></p>
  <ol id="learn-counts" class="counts" aria-label="Drawings saved of each digit"></ol>
  <p id="learn-need" class="muted"></p>
  <div class="buttons">
    <button type="button" id="learn-teach">Teach it my handwriting</button>
    <button type="button" id="learn-cancel" hidden>Stop learning</button>
  </div>
  <p id="learn-progress-line" hidden>
    <label for="learn-progress">Learning</label>
    <progress id="learn-progress" max="1" value="0"></progress>
  </p>
  <p id="learn-message" role="status"></p>
  <table id="learn-result" class="learn-result" hidden>
    <caption>Accuracy before and after learning</caption>
    <thead><tr><th scope="col">measured on</th><th scope="col">before</th><th scope="col">after</th></tr></thead>
    <tbody>
      <tr><th scope="row">your held-out drawings</th><td id="learn-mine-before"></td><td id="learn-mine-after"></td></tr>
      <tr><th scope="row">MNIST's test set</th><td id="learn-mnist-before"></td><td id="learn-mnist-after"></td></tr>
    </tbody>
  </table>
  <p id="learn-held-out" class="muted"></p>
  <div class="buttons">
    <button type="button" id="learn-switch" hidden></button>
  </div>`;

const $ = (id) => document.getElementById(id);

async function getJson(url, options) {
  const response = await fetch(url, options);
  return [response, await response.json().catch(() => ({detail: `HTTP ${response.status}`}))];
}

function percentage(value) {
  return typeof value === "number" ? `${(100 * value).toFixed(1)}%` : "–";
}

function digitWord(d) {
  return classes[d] === String(d) ? `a ${d}` : classes[d];
}

// --- which digit to ask for, and what is still wanted ------------------------------------------------
function nextDigit(after) {
  // The digits in turn, from the one after the last asked, skipping those that have all they need.
  for (let step = 1; step <= 10; step++) {
    const digit = (after + step) % 10;
    if (learn.counts[digit] < learn.wanted) return digit;
  }
  return (after + 1) % 10; // every digit has enough: keep going round for whoever wants more
}

function askFor(digit) {
  learn.asked = digit;
  $("learn-prompt").textContent = `Draw ${digitWord(digit)}`;
  $("learn-save").textContent = `Save as ${classes[digit]}`;
}

function renderCounts() {
  $("learn-counts").replaceChildren(...learn.counts.map((n, digit) => {
    const item = document.createElement("li");
    const still = Math.max(0, learn.wanted - n);
    item.className = n >= learn.wanted ? "enough" : n >= learn.minimum ? "started" : "";
    item.innerHTML = '<span class="digit"></span><span class="count"></span>';
    item.querySelector(".digit").textContent = classes[digit];
    item.querySelector(".count").textContent = `${n}/${learn.wanted}`;
    item.setAttribute("aria-label", `${classes[digit]}: ${n} saved, ${still ? `${still} more wanted` : "enough"}`);
    return item;
  }));
  const short = learn.counts.flatMap((n, digit) => (n < learn.minimum ? [classes[digit]] : []));
  const missing = learn.counts.reduce((sum, n) => sum + Math.max(0, learn.wanted - n), 0);
  $("learn-need").textContent = short.length ?
    `At least ${learn.minimum} of each digit before it can learn: ${short.join(", ")} still need more.` :
    missing ? `Enough to learn; ${missing} more drawing${missing === 1 ? "" : "s"} would make it ${learn.wanted} of each.` :
    `${learn.wanted} of each: ready to learn.`;
  $("learn-teach").disabled = short.length > 0 || learn.running;
  $("learn-undo").disabled = learn.counts.every((n) => n === 0);
}

async function loadCounts() {
  const [response, info] = await getJson("/api/collected");
  if (!response.ok) return;
  learn.counts = info.counts.slice(0, 10);
  learn.wanted = info.wanted;
  learn.minimum = info.minimum;
  renderCounts();
}

// --- saving, in one step, under the digit asked for ----------------------------------------------------
async function save() {
  const status = $("learn-status");
  if (isEmpty()) {
    status.textContent = `Draw ${digitWord(learn.asked)} first.`;
    return;
  }
  if (learn.saving) return; // Enter pressed twice: the drawing is saved once
  const digit = learn.asked;
  const body = canvasBmp(canvas.width); // the drawing at full size, as "this is a N" saves it
  const headers = {"Content-Type": "image/bmp"};
  let response, answer;
  learn.saving = true;
  try {
    [response, answer] = await getJson(`/api/collect?label=${digit}`, {method: "POST", body, headers});
  } catch {
    status.textContent = "Not saved: the server cannot be reached.";
    return;
  } finally {
    learn.saving = false;
  }
  if (!response.ok) {
    status.textContent = `Not saved: ${refusalText(response.status, answer.detail)}`;
    return;
  }
  learn.saved.push(answer.file);
  const read = answer.read_as;
  status.classList.toggle("misread", read != null && read !== digit);
  status.textContent = read != null && read !== digit ?
    `Saved as ${classes[digit]}; the model read it as ${classes[read]}: learning is for exactly that.` :
    `Saved as ${classes[digit]}.`;
  clear();
  learn.counts = answer.counts.slice(0, 10);
  renderCounts();
  askFor(nextDigit(digit));
  canvas.focus();
}

async function undoSave() {
  const status = $("learn-status");
  // The drawing this page saved last; after a reload, the newest one the server saved.
  const file = learn.saved.at(-1);
  const url = file ? `/api/collect?file=${encodeURIComponent(file)}` : "/api/collect";
  const [response, answer] = await getJson(url, {method: "DELETE"}).catch(() => [null, null]);
  if (!response) {
    status.textContent = "Not undone: the server cannot be reached.";
    return;
  }
  status.classList.remove("misread");
  if (!response.ok) {
    if (response.status === 404 && file) learn.saved.pop(); // gone already: the next undo takes the newest
    status.textContent = `Not undone: ${answer.detail}`;
    return;
  }
  learn.saved.pop();
  status.textContent = `Removed the last drawing saved as ${classes[answer.label]}.`;
  learn.counts = answer.counts.slice(0, 10);
  renderCounts();
  askFor(answer.label); // ask again for the digit that was taken back
}

// --- learning in the background --------------------------------------------------------------------------
async function teach() {
  const [response, job] = await getJson("/api/learn", {method: "POST"}).catch(() => [null, null]);
  if (!response) {
    $("learn-message").textContent = "The server cannot be reached.";
    return;
  }
  if (!response.ok && response.status !== 409) {
    $("learn-message").textContent = `It cannot learn yet: ${job.detail}`;
    return;
  }
  showJob(response.status === 409 ? {state: "running", progress: 0, message: job.detail} : job);
  follow();
}

function follow() {
  clearTimeout(learn.poll);
  learn.poll = setTimeout(async () => {
    const [response, job] = await getJson("/api/learn").catch(() => [null, null]);
    if (response && response.ok) showJob(job);
    if (!response || !response.ok || job.state === "running") follow();
  }, POLL_MS);
}

function showJob(job) {
  const running = job.state === "running";
  learn.running = running;
  $("learn-progress-line").hidden = !running;
  $("learn-progress").value = Math.min(1, Math.max(0, job.progress ?? 0));
  $("learn-teach").hidden = running;
  $("learn-cancel").hidden = !running;
  renderCounts();
  const messages = {
    running: job.message || "Learning your handwriting…",
    done: `Learned: ${job.run} answers now, saved as a run folder.`,
    failed: `Learning failed: ${job.message || "no reason given"}`, // the server says the model in use is unchanged
    idle: job.message || "",
  };
  $("learn-message").textContent = messages[job.state] ?? "";
  $("learn-message").classList.toggle("error", job.state === "failed");
  if (job.state === "done") {
    showResult(job);
    loadServedModel();
  }
}

function showResult(job) {
  $("learn-mine-before").textContent = percentage(job.before);
  $("learn-mine-after").textContent = percentage(job.after);
  $("learn-mnist-before").textContent = percentage(job.mnist?.before);
  $("learn-mnist-after").textContent = percentage(job.mnist?.after);
  $("learn-held-out").textContent = job.held_out == null ? "" :
    `Measured on ${job.held_out} of your drawings kept out of learning; it learned from ${job.trained}.`;
  $("learn-result").hidden = false;
}

// --- which model answers ---------------------------------------------------------------------------------
async function loadServedModel() {
  const [response, info] = await getJson("/api/model").catch(() => [null, null]);
  if (!response || !response.ok) return;
  learn.model = info;
  if (!info.learn) return;
  const learned = info.use === "learned";
  $("model").textContent = describeModel(info); // the same line as app.js writes, for the model answering now
  $("model-use").textContent = learned ? `Answering: the model learned from your handwriting (${info.learned}).` :
    `Answering: the original model (${info.original}).`;
  $("model-use").hidden = false;
  const button = $("learn-switch");
  button.hidden = !info.learned;
  button.textContent = learned ? "Go back to the original model" : "Use the learned model again";
  button.dataset.use = learned ? "original" : "learned";
}

async function switchModel() {
  const use = $("learn-switch").dataset.use;
  const [response, answer] = await getJson("/api/model", {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify({use}),
  }).catch(() => [null, null]);
  $("learn-message").textContent = !response ? "The server cannot be reached." :
    response.ok ? (use === "learned" ? "The learned model answers again." : "The original model answers again.") :
    `Not switched: ${answer.detail}`;
  await loadServedModel();
}

// --- the mode ----------------------------------------------------------------------------------------------
function setMode(on) {
  learn.toggle.setAttribute("aria-pressed", String(on));
  learn.section.hidden = !on;
  document.body.classList.toggle("learning", on);
  const collect = document.getElementById("collect");
  if (collect && on) collect.hidden = true; // one way to save at a time: the digit asked for
  else if (collect && learn.model?.collect) collect.hidden = false;
  if (on) {
    loadCounts().then(() => askFor(nextDigit(-1)));
    canvas.focus();
  }
}

async function start() {
  await loadServedModel();
  if (!learn.model?.learn) return; // no learning on this server: the page stays as it was
  const [response, job] = await getJson("/api/learn").catch(() => [null, null]);
  if (!response || !response.ok) return;
  learn.toggle.hidden = false;
  learn.toggle.addEventListener("click", () => setMode(learn.toggle.getAttribute("aria-pressed") !== "true"));
  $("learn-save").addEventListener("click", save);
  $("learn-next").addEventListener("click", () => askFor(nextDigit(learn.asked)));
  $("learn-undo").addEventListener("click", undoSave);
  $("learn-teach").addEventListener("click", teach);
  $("learn-switch").addEventListener("click", switchModel);
  $("learn-cancel").addEventListener("click", () => fetch("/api/learn", {method: "DELETE"}).catch(() => null));
  canvas.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !learn.section.hidden) {
      event.preventDefault();
      save();
    }
  });
  askFor(0);
  showJob(job);
  if (job.state === "running") follow();
}

start();
