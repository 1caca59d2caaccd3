// The "New video" form: the request fields with the contract's bounds (read from /openapi.json, so the form follows
// the API), a product photo checked the way the API checks it before anything is uploaded, and errors that name the
// field at fault.

import {$, say, show} from "./dom.js";
import {bytes} from "./format.js";

const PRESETS = [
  ["Square", 256, 256], ["Square", 512, 512], ["Square", 768, 768],
  ["Portrait 9:16", 288, 512], ["Portrait 9:16", 384, 672],
  ["Landscape 16:9", 512, 288], ["Landscape 16:9", 672, 384],
];

// Which input shows a field's error (the API names fields as the request does).
const INPUTS = {
  prompt: "prompt", negative_prompt: "negative-prompt", input_reference: "image", image_url: "image", width: "size",
  height: "size", num_frames: "num-frames", num_inference_steps: "steps", guidance_scale: "guidance", seed: "seed",
  fallback: "allow-template",
};

// The first bytes of each type the API accepts (it sniffs too, never trusting the name or the browser's type).
const SIGNATURES = {
  JPEG: (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
  PNG: (b) => [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a].every((v, i) => b[i] === v),
  GIF: (b) => ascii(b, 0, 6) === "GIF87a" || ascii(b, 0, 6) === "GIF89a",
  WEBP: (b) => ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 12) === "WEBP",
  BMP: (b) => ascii(b, 0, 2) === "BM",
  TIFF: (b) => ascii(b, 0, 4) === "II*\0" || ascii(b, 0, 4) === "MM\0*",
};

function ascii(data, start, end) {
  return String.fromCharCode(...data.slice(start, end));
}

// A property's schema, looking through `anyOf: [{...}, {type: null}]` of optional fields.
function property(schema, name) {
  const found = schema.properties?.[name];
  if (!found) return null;
  const concrete = (found.anyOf ?? []).find((branch) => branch.type !== "null");
  return {...found, ...(concrete ?? {})};
}

function bound(input, rules, fallbackStep = null) {
  if (!rules) return;
  if (rules.minimum !== undefined) input.min = rules.minimum;
  if (rules.maximum !== undefined) input.max = rules.maximum;
  if (rules.default !== undefined && rules.default !== null) input.value = rules.default;
  if (fallbackStep !== null) input.step = fallbackStep;
}

export class SubmitForm {
  constructor({schema, imageLimits, starting, onSubmit}) {
    this.schema = schema;
    this.starting = starting;  // the API's suggested starting values (light ones for CPU workers), else the schema's
    this.limits = imageLimits;
    this.onSubmit = onSubmit;
    this.form = $("submit-form");
    this.photo = null;  // {file} once the chosen file passed the checks
    this.previewUrl = null;
    this.setUp();
  }

  setUp() {
    const width = property(this.schema, "width");
    const height = property(this.schema, "height");
    const fits = (value, rules) => !rules || (value >= (rules.minimum ?? 0) && value <= (rules.maximum ?? Infinity)
      && value % (rules.multipleOf ?? 1) === 0);
    const size = $("size");
    size.replaceChildren();
    for (const [name, w, h] of PRESETS.filter(([, w, h]) => fits(w, width) && fits(h, height))) {
      const option = new Option(`${name} ${w} × ${h}`, `${w}x${h}`);
      option.selected = w === (this.starting.width ?? width?.default ?? 512)
        && h === (this.starting.height ?? height?.default ?? 512);
      size.append(option);
    }
    bound($("num-frames"), property(this.schema, "num_frames"));
    bound($("steps"), property(this.schema, "num_inference_steps"));
    bound($("guidance"), property(this.schema, "guidance_scale"), "0.5");
    const inputs = [["num_frames", "num-frames"], ["num_inference_steps", "steps"], ["guidance_scale", "guidance"]];
    for (const [name, id] of inputs) {
      if (this.starting[name] !== undefined) $(id).value = this.starting[name];
    }
    const seed = property(this.schema, "seed");
    if (seed?.maximum !== undefined) $("seed").max = seed.maximum;
    const prompt = property(this.schema, "prompt");
    if (prompt?.maxLength) $("prompt").maxLength = prompt.maxLength;
    const negative = property(this.schema, "negative_prompt");
    if (negative?.maxLength) $("negative-prompt").maxLength = negative.maxLength;

    const fallback = property(this.schema, "fallback");
    this.fallback = fallback?.enum?.includes("template") ? "template" : null;
    $("allow-template").disabled = this.fallback === null;
    $("allow-template-hint").textContent = this.fallback === null
      ? "This API does not offer template videos yet."
      : "When every GPU is busy you get a quick template video (marked as such) instead of waiting.";

    $("image").addEventListener("change", () => this.choose($("image").files[0] ?? null));
    $("image-clear").addEventListener("click", () => this.choose(null));
    const zone = $("dropzone");
    zone.addEventListener("dragover", (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dragging"));
    zone.addEventListener("drop", (event) => {
      event.preventDefault();
      zone.classList.remove("dragging");
      const file = event.dataTransfer?.files?.[0];
      if (file) this.choose(file);
    });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  // Check a chosen photo as the API will (type from its bytes, size, pixels) and preview it; nothing is uploaded.
  async choose(file) {
    this.photo = null;
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = null;
    const preview = $("image-preview");
    show(preview, false);
    preview.removeAttribute("src");
    say($("image-error"), "");
    $("image").removeAttribute("aria-invalid");
    $("image-info").textContent = "";
    show($("image-clear"), file !== null);
    if (file === null) {
      $("image").value = "";
      return;
    }
    const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
    const type = this.limits.types.find((name) => SIGNATURES[name]?.(head));
    const problem = file.size === 0 ? "The file is empty."
      : file.size > this.limits.max_bytes
        ? `The photo is ${bytes(file.size)}; the API accepts up to ${bytes(this.limits.max_bytes)}.`
        : type === undefined ? `This file is not a ${this.limits.types.join(", ")} image.` : null;
    if (problem) return this.refuse(problem);
    this.previewUrl = URL.createObjectURL(file);
    const size = await imageSize(this.previewUrl);
    if (size !== null && size.width * size.height > this.limits.max_pixels) {
      const mp = (n) => (n / 1e6).toFixed(1);
      return this.refuse(`The photo is ${size.width} × ${size.height} (${mp(size.width * size.height)} megapixels); `
        + `the API accepts up to ${mp(this.limits.max_pixels)} megapixels.`);
    }
    this.photo = file;
    if (size !== null) {
      preview.src = this.previewUrl;
      show(preview, true);
    }
    $("image-info").textContent = size === null
      ? `${type}, ${bytes(file.size)} (no preview in this browser; the API checks its size)`
      : `${type}, ${size.width} × ${size.height}, ${bytes(file.size)}`;
  }

  refuse(message) {
    say($("image-error"), message);
    $("image").setAttribute("aria-invalid", "true");
  }

  clearErrors() {
    say($("form-error"), "");
    for (const node of this.form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }

  showError(message, field = null) {
    say($("form-error"), message);
    const input = field ? document.getElementById(INPUTS[field.split(".")[0]] ?? "") : null;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  fields() {
    const data = new FormData();
    const [width, height] = $("size").value.split("x");
    const text = (id) => $(id).value.trim();
    data.set("prompt", text("prompt"));
    if (text("negative-prompt")) data.set("negative_prompt", text("negative-prompt"));
    data.set("width", width);
    data.set("height", height);
    for (const [name, id] of [["num_frames", "num-frames"], ["num_inference_steps", "steps"],
      ["guidance_scale", "guidance"], ["seed", "seed"]]) {
      if (text(id) !== "") data.set(name, text(id));
    }
    if (this.fallback !== null && $("allow-template").checked) data.set("fallback", this.fallback);
    if (this.photo) data.set("input_reference", this.photo, this.photo.name || "photo");
    return data;
  }

  async submit() {
    this.clearErrors();
    if ($("image-error").hidden === false) return this.showError("Choose another photo first.", "input_reference");
    if (!$("prompt").value.trim()) return this.showError("Describe the video in the prompt.", "prompt");
    const button = $("submit");
    button.disabled = true;
    try {
      await this.onSubmit(this.fields());
    } catch (error) {
      if (error.status === undefined) throw error;
      this.showError(`Not accepted: ${error.describe()}`, error.field);
    } finally {
      button.disabled = false;
    }
  }
}

function imageSize(url) {
  return new Promise((resolve) => {
    const probe = new Image();
    probe.onload = () => resolve({width: probe.naturalWidth, height: probe.naturalHeight});
    probe.onerror = () => resolve(null);
    probe.src = url;
  });
}
