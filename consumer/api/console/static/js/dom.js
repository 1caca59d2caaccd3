// DOM helpers. Text from the API or the user only ever goes in through textContent, never as HTML.

export function $(id) {
  const node = document.getElementById(id);
  if (node === null) throw new Error(`missing element #${id}`);
  return node;
}

// h("li", {class: "job", testid: "job-1", attrs: {...}}, child, "text", ...): children are nodes or text.
export function h(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  if (props.class) node.className = props.class;
  if (props.testid) node.dataset.testid = props.testid;
  if (props.text !== undefined) node.textContent = String(props.text);
  for (const [name, value] of Object.entries(props.attrs ?? {})) node.setAttribute(name, String(value));
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

export function show(node, visible) {
  node.hidden = !visible;
}

export function say(node, text) {
  node.textContent = text ?? "";
  node.hidden = !text;
}

// Fill a <dl> with [term, description] pairs (descriptions as text).
export function pairs(list, entries) {
  list.replaceChildren(...entries.flatMap(([term, value]) => [h("dt", {text: term}), h("dd", {text: value})]));
}
