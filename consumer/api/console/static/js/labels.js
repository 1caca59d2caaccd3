// What the console calls the API's fields: a message the API writes about `num_frames` or `seconds` reads "Length",
// as the form says. Pure.

// The request's fields (and OpenAI's names for them) under the form's labels.
export const LABELS = {
  prompt: "Prompt",
  negative_prompt: "Negative prompt",
  input_reference: "Product photo",
  image_url: "Product photo",
  size: "Size",
  width: "Size",
  height: "Size",
  seconds: "Length",
  num_frames: "Length",
  fps: "Frames per second",
  num_inference_steps: "Steps",
  guidance_scale: "Guidance",
  seed: "Seed",
  fallback: "Allow a template video",
  model: "Model",
  metadata: "Metadata",
};

// The label of a field the API names ("num_frames", "metadata.sku"), or null for one the form does not show.
export function labelOf(field) {
  if (!field) return null;
  const name = field.split(".")[0];
  return Object.hasOwn(LABELS, name) ? LABELS[name] : null;
}

// The API's message about `field` in the form's words: the field's name becomes its label where the message says it,
// else the label follows in brackets.
export function explain(message, field = null) {
  const label = labelOf(field);
  if (label === null) return message;
  const name = field.split(".")[0];
  const named = new RegExp(`(^|[^A-Za-z0-9_])${name}(?![A-Za-z0-9_])`, "g");
  return named.test(message) ? message.replace(named, `$1${label}`) : `${message} (${label})`;
}

// An ApiError as a person reads it: the message in the form's words and when to try again.
export function describe(error) {
  const text = explain(error.message, error.field);
  return error.retryAfter ? `${text} Try again in ${error.retryAfter} s.` : text;
}
