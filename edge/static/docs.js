"use strict";
// Renders /openapi.json as a plain list of operations (no external assets).
fetch("/openapi.json").then((r) => r.json()).then((doc) => {
  const main = document.getElementById("docs");
  main.replaceChildren();
  const h1 = document.createElement("h1");
  h1.textContent = `${doc.info.title} API ${doc.info.version}`;
  main.append(h1);
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const section = document.createElement("section");
      const h2 = document.createElement("h2");
      h2.textContent = `${method.toUpperCase()} ${path}`;
      const p = document.createElement("p");
      p.textContent = `${op.summary}${op.description ? ": " + op.description : ""}`;
      const codes = document.createElement("p");
      codes.textContent = `Responses: ${Object.keys(op.responses).join(", ")}`;
      section.append(h2, p, codes);
      main.append(section);
    }
  }
});
