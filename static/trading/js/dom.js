// The one DOM helper of the page: an element with its attributes and children.

/** `el("td", {class: "num", "data-side": "buy"}, "1.00")`: properties set as given, `class`
 * as the class name, `data-*` as attributes; children (nodes or strings) appended in order. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "class") node.className = value;
    else if (name.startsWith("data-")) node.setAttribute(name, value);
    else node[name] = value;
  }
  for (const child of children) node.append(child);
  return node;
}
