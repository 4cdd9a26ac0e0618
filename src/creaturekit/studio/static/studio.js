// creaturekit studio: the page's small script. Everything it shows is set with
// textContent or as attributes through the DOM, never as markup.
"use strict";

const TOKEN = document.querySelector('meta[name="studio-token"]').content;

async function api(method, path, body) {
  const options = {method, headers: {"X-Studio-Token": TOKEN}};
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = {};
  try { data = await response.json(); } catch (e) { data = {error: response.statusText}; }
  if (!response.ok) throw new Error(data.error || `${response.status} ${response.statusText}`);
  return data;
}

function el(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function say(node, text, isError) {
  node.textContent = text;
  node.classList.toggle("error", Boolean(isError));
}

// -- parts: inline rename ---------------------------------------------------------------
for (const form of document.querySelectorAll("form.rename")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const out = form.querySelector(".result");
    const name = form.elements.name.value.trim();
    try {
      const done = await api("POST", `/api/parts/${form.dataset.index}/name`, {name});
      form.closest("section").querySelector(".name").textContent = done.name;
      const legend = document.querySelector(`#legend${Number(form.dataset.index)} .pname`);
      if (legend) legend.textContent = done.name;
      say(out, "Renamed; discovery/report.html is updated.", false);
    } catch (err) {
      say(out, err.message, true);
    }
  });
}

// -- history: delete ---------------------------------------------------------------------
for (const button of document.querySelectorAll("button.delete")) {
  button.addEventListener("click", async () => {
    const name = button.dataset.mix;
    if (!window.confirm(`Delete mixes/${name} and its images?`)) return;
    try {
      await api("DELETE", `/api/mixes/${encodeURIComponent(name)}`);
      button.closest("section").remove();
    } catch (err) {
      button.replaceWith(el("span", {className: "note error", text: err.message}));
    }
  });
}

// -- compose -----------------------------------------------------------------------------
const compose = document.getElementById("compose");

function codeList(text, part) {
  const codes = text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (!codes.every((s) => /^\d+$/.test(s))) {
    throw new Error(`Sweep codes of ${part} must be whole numbers separated by commas.`);
  }
  return codes.map(Number);
}

function composeRequest() {
  const parts = {};
  const random = [];
  for (const fieldset of compose.querySelectorAll("fieldset.part")) {
    const name = fieldset.dataset.part;
    const picked = fieldset.querySelector("input[type=radio]:checked").value;
    const blend = fieldset.querySelector(".blend").value;
    const sweep = codeList(fieldset.querySelector(".sweep").value, name);
    if (picked === "random") {
      if (blend !== "" || sweep.length) throw new Error(`${name}: blend and sweep need a chosen code.`);
      random.push(name);
      continue;
    }
    const occurrences = [];
    if (sweep.length) occurrences.push(sweep);
    else if (picked !== "") occurrences.push([Number(picked)]);
    if (blend !== "") {
      if (!occurrences.length) throw new Error(`${name}: pick a code to blend with.`);
      occurrences.push([Number(blend)]);
    }
    if (occurrences.length) parts[name] = occurrences;
  }
  const f = compose.elements;
  const value = (input) => (input.value.trim() === "" ? null : input.value.trim());
  return {
    parts, random,
    prompt: value(f.prompt),
    negative: f.negative.value === "" ? null : f.negative.value,
    like: value(f.like),
    seed: value(f.seed),
    n: value(f.n),
    steps: value(f.steps),
    guidance: value(f.guidance),
    run: f.run.value || null,
  };
}

function keep(record) {
  for (const {part, code} of record.codes || []) {
    const fieldset = [...compose.querySelectorAll("fieldset.part")].find((f) => f.dataset.part === part);
    const radio = fieldset && fieldset.querySelector(`input[type=radio][value="${Number(code)}"]`);
    if (radio) radio.checked = true;
  }
}

function showResults(job) {
  const figures = job.images.map((image, i) => {
    const record = job.records[i];
    const codes = (record.codes || []).map((c) => `${c.part}:${c.code}`).join(" ");
    const command = el("code", {className: "command", text: job.command});
    const copy = el("button", {type: "button", text: "Copy command"});
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(job.command); copy.textContent = "Copied"; }
      catch (e) { window.getSelection().selectAllChildren(command); copy.textContent = "Selected"; }
    });
    const keepButton = el("button", {type: "button", text: "Keep these parts"});
    keepButton.addEventListener("click", () => keep(record));
    const src = `/files/mixes/${encodeURIComponent(job.folder)}/${encodeURIComponent(image)}`;
    return el("figure", {className: "creature"}, [
      el("img", {src, alt: codes}),
      el("figcaption", {}, [
        el("span", {className: "codes", text: codes}),
        el("br"),
        el("span", {className: "muted", text: `seed ${record.seed} · mixes/${job.folder}/${image}${record.blank ? " · blank" : ""}`}),
        command, copy, " ", keepButton,
      ]),
    ]);
  });
  document.getElementById("results").prepend(...figures);  // newest click first, in order
}

if (compose) {
  const status = document.getElementById("status");
  const progress = document.getElementById("progress");
  const generate = document.getElementById("generate");
  const cancel = document.getElementById("cancel");
  let current = null;

  cancel.addEventListener("click", async () => {
    if (current) await api("POST", `/api/jobs/${current}/cancel`).catch(() => {});
  });

  compose.addEventListener("submit", async (event) => {
    event.preventDefault();
    let job;
    try {
      job = await api("POST", "/api/generate", composeRequest());
    } catch (err) {
      say(status, err.message, true);
      return;
    }
    current = job.id;
    generate.disabled = true;
    cancel.disabled = false;
    say(status, "Queued…", false);
    while (!["done", "failed", "cancelled"].includes(job.state)) {
      // answers as soon as the job finishes, else after half a second (for the progress)
      try { job = await api("GET", `/api/jobs/${job.id}?wait=0.5`); }
      catch (err) { job = {state: "failed", message: `Lost the studio: ${err.message}`}; }
      progress.value = job.progress || 0;
      if (job.state === "loading") say(status, "Loading the run…", false);
      if (job.state === "running") say(status, `Generating… ${Math.round(100 * job.progress)}%`, false);
    }
    generate.disabled = false;
    cancel.disabled = true;
    current = null;
    if (job.state === "done") {
      progress.value = 1;
      say(status, `${job.images.length} creature(s) in mixes/${job.folder} (${job.seconds.toFixed(1)} s)`, false);
      showResults(job);
    } else {
      say(status, job.message, job.state === "failed");
    }
  });
}
