// Extractive QA in the page, the same way pocketbert/qa.py does it on the host: a WordPiece tokenizer read from the
// artifact folder's tokenizer.json that keeps every token's character span in the ORIGINAL text, the question /
// context windows of prepare_features (truncation only_second with a stride, padded to the window length), and the
// span decoding of decode_nbest (top 20 starts x top 20 ends, at most 30 tokens, best score start + end logit,
// distinct texts, softmax over the kept ones). The answer is a slice of the context as the user typed it.
//
// Why not transformers.js's tokenizer: it returns no character offsets, and its QA pipeline rebuilds the answer from
// uncased tokens ("maria okafor" for "Maria Okafor").

export const MAX_SEQ_LEN = 384, DOC_STRIDE = 128, MAX_QUERY_LEN = 64, N_BEST = 20, MAX_ANSWER_LEN = 30;

const ASCII_PUNCT = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");

function isWhitespace(ch) {
  return ch === " " || ch === "\t" || ch === "\n" || ch === "\r" || /^\s$/u.test(ch);
}

function isControl(ch) {
  if (ch === "\t" || ch === "\n" || ch === "\r") return false;
  return /^\p{C}$/u.test(ch);
}

function isPunctuation(ch) {
  return ASCII_PUNCT.has(ch) || /^\p{P}$/u.test(ch);
}

function isChinese(cp) {
  return (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f);
}

export class WordPiece {
  // tokenizer: the parsed tokenizer.json of a BERT-style (BertNormalizer + BertPreTokenizer + WordPiece) model.
  constructor(tokenizer) {
    const { normalizer, pre_tokenizer: pre, model } = tokenizer;
    if (!model || model.type !== "WordPiece" || !normalizer || normalizer.type !== "BertNormalizer" ||
        !pre || pre.type !== "BertPreTokenizer") {
      throw new Error("this page tokenizes BERT-style WordPiece models (BERT, DistilBERT, ELECTRA, MobileBERT); "
        + `this tokenizer.json has ${model && model.type} / ${normalizer && normalizer.type}`);
    }
    this.vocab = new Map(Object.entries(model.vocab));
    this.unk = model.unk_token;
    this.prefix = model.continuing_subword_prefix ?? "##";
    this.maxChars = model.max_input_chars_per_word ?? 100;
    this.lowercase = normalizer.lowercase !== false;
    this.stripAccents = normalizer.strip_accents ?? this.lowercase;
    this.cleanText = normalizer.clean_text !== false;
    this.chinese = normalizer.handle_chinese_chars !== false;
    // Special tokens match the raw text before normalization, longest first.
    this.added = (tokenizer.added_tokens || []).filter((t) => t.special && !t.normalized)
      .sort((a, b) => b.content.length - a.content.length);
    const id = (token) => {
      if (!this.vocab.has(token)) throw new Error(`tokenizer.json has no ${token} token`);
      return this.vocab.get(token);
    };
    this.cls = id("[CLS]");
    this.sep = id("[SEP]");
    this.pad = tokenizer.padding?.pad_id ?? id("[PAD]");
  }

  // Normalized characters, each with the [start, end) of the original character it came from (UTF-16 indices).
  normalize(text, base, out) {
    for (let i = 0; i < text.length;) {
      const cp = text.codePointAt(i);
      const ch = String.fromCodePoint(cp);
      const span = [base + i, base + i + ch.length];
      i += ch.length;
      if (this.cleanText) {
        if (cp === 0 || cp === 0xfffd || isControl(ch)) continue;
        if (isWhitespace(ch)) {
          out.push({ ch: " ", span });
          continue;
        }
      }
      if (this.chinese && isChinese(cp)) {
        out.push({ ch: " ", span }, { ch, span }, { ch: " ", span });
        continue;
      }
      let piece = ch;
      if (this.stripAccents) piece = piece.normalize("NFD").replace(/\p{Mn}/gu, "");
      if (this.lowercase) piece = piece.toLowerCase();
      for (const c of piece) out.push({ ch: c, span });
    }
    return out;
  }

  // Words of the BERT pre-tokenizer: split on white space (dropped) and punctuation (kept, one character each).
  words(chars) {
    const words = [];
    let word = [];
    for (const item of chars) {
      if (isWhitespace(item.ch)) {
        if (word.length) words.push(word);
        word = [];
      } else if (isPunctuation(item.ch)) {
        if (word.length) words.push(word);
        words.push([item]);
        word = [];
      } else {
        word.push(item);
      }
    }
    if (word.length) words.push(word);
    return words;
  }

  wordPieces(word, tokens) {
    const whole = [word[0].span[0], word[word.length - 1].span[1]];
    if (word.length > this.maxChars) {
      tokens.push({ id: this.vocab.get(this.unk), offsets: whole });
      return;
    }
    const pieces = [];
    for (let start = 0; start < word.length;) {
      let end = word.length, found = null;
      while (start < end) {
        let piece = word.slice(start, end).map((c) => c.ch).join("");
        if (start > 0) piece = this.prefix + piece;
        if (this.vocab.has(piece)) {
          found = { id: this.vocab.get(piece), offsets: [word[start].span[0], word[end - 1].span[1]] };
          break;
        }
        end -= 1;
      }
      if (!found) {
        tokens.push({ id: this.vocab.get(this.unk), offsets: whole });
        return;
      }
      pieces.push(found);
      start = end;
    }
    tokens.push(...pieces);
  }

  // [{id, offsets: [start, end)}] for `text`, offsets in `text` itself.
  encode(text) {
    const tokens = [];
    let rest = 0;
    const segments = [];
    // Cut out special tokens typed in the text ("[SEP]"), as the Rust tokenizer does before normalizing.
    for (let i = 0; i < text.length;) {
      const hit = this.added.find((t) => text.startsWith(t.content, i));
      if (hit) {
        if (i > rest) segments.push({ text: text.slice(rest, i), base: rest });
        segments.push({ special: hit, base: i });
        i += hit.content.length;
        rest = i;
      } else {
        i += 1;
      }
    }
    if (rest < text.length) segments.push({ text: text.slice(rest), base: rest });
    for (const segment of segments) {
      if (segment.special) {
        tokens.push({ id: segment.special.id, offsets: [segment.base, segment.base + segment.special.content.length] });
        continue;
      }
      for (const word of this.words(this.normalize(segment.text, segment.base, []))) this.wordPieces(word, tokens);
    }
    return tokens;
  }
}

// The window `pocketbert eval` uses for this artifact (bench/evaluate.py fit_window + QAWindow.clamped): its own
// length where the file takes any length up to a maximum, else its longest exported length at most maxSeqLen.
export function windowFor(manifest, maxSeqLen = MAX_SEQ_LEN) {
  const seq = manifest.sequence;
  const accepted = (manifest.accepted_lengths || {}).sequence || {};
  let length;
  if (accepted.kind === "range") {
    length = Math.min(maxSeqLen, accepted.max);
  } else if (seq.dynamic) {
    length = Math.min(maxSeqLen, seq.max);
  } else {
    const fitting = seq.lengths.filter((n) => n <= maxSeqLen);
    if (!fitting.length) throw new Error(`this artifact runs lengths ${seq.lengths}, none of them <= ${maxSeqLen}`);
    length = Math.max(...fitting);
  }
  if (length < 8) throw new Error(`a QA window of ${length} tokens cannot hold a question and context`);
  const query = Math.min(MAX_QUERY_LEN, Math.floor((length - 3) / 2));
  const stride = Math.min(DOC_STRIDE, length - 3 - query - 1);
  return { length, stride, query };
}

// Windows of [CLS] question [SEP] context [SEP], padded: {inputs: {name: Int array}, offsets: [[s, e] | null]}.
export function prepareWindows(tokenizer, question, context, window, inputNames) {
  const q = tokenizer.encode(question.trim()).slice(0, window.query).map((t) => t.id);
  const c = tokenizer.encode(context);
  const room = window.length - q.length - 3;
  const ranges = [];
  if (c.length <= room) {
    ranges.push([0, c.length]);
  } else {
    const step = room - window.stride;
    for (let start = 0; start < c.length; start += step) {
      const stop = Math.min(start + room, c.length);
      ranges.push([start, stop]);
      if (stop === c.length) break;
    }
  }
  return ranges.map(([start, stop]) => {
    const part = c.slice(start, stop);
    const ids = [tokenizer.cls, ...q, tokenizer.sep, ...part.map((t) => t.id), tokenizer.sep];
    const types = [...new Array(q.length + 2).fill(0), ...new Array(part.length + 1).fill(1)];
    const offsets = [...new Array(q.length + 2).fill(null), ...part.map((t) => t.offsets), null];
    const mask = new Array(ids.length).fill(1);
    while (ids.length < window.length) {
      ids.push(tokenizer.pad);
      types.push(0);
      mask.push(0);
      offsets.push(null);
    }
    const all = { input_ids: ids, attention_mask: mask, token_type_ids: types };
    const inputs = {};
    for (const name of inputNames) {
      if (!(name in all)) throw new Error(`the artifact takes an input '${name}' this page does not make`);
      inputs[name] = all[name];
    }
    return { inputs, offsets };
  });
}

// Indices of the n largest values, largest first (ties: the later index first, as numpy's argsort()[::-1]).
function topIndices(values, n) {
  const order = Array.from(values.keys());
  order.sort((a, b) => (values[b] - values[a]) || (b - a));
  return order.slice(0, n);
}

// decode_nbest for one question: candidates best first, [{text, probability, start_logit, end_logit, start, end}].
export function decodeNbest(context, windows, logits, nBest = N_BEST, maxAnswerLen = MAX_ANSWER_LEN) {
  const spans = [];
  windows.forEach((window, f) => {
    const [startLogits, endLogits] = logits[f];
    const offsets = window.offsets;
    for (const s of topIndices(startLogits, nBest)) {
      for (const e of topIndices(endLogits, nBest)) {
        if (s >= offsets.length || e >= offsets.length || !offsets[s] || !offsets[e]) continue;
        if (e < s || e - s + 1 > maxAnswerLen) continue;
        spans.push({
          // float32 addition, as numpy adds two float32 logits
          score: Math.fround(startLogits[s] + endLogits[e]), text: context.slice(offsets[s][0], offsets[e][1]),
          start: offsets[s][0], end: offsets[e][1], start_logit: startLogits[s], end_logit: endLogits[e],
        });
      }
    }
  });
  spans.sort((a, b) => b.score - a.score); // stable: the first of equal scores stays first
  const kept = new Map();
  for (const span of spans) {
    if (!kept.has(span.text) && kept.size < nBest) kept.set(span.text, span);
  }
  const values = [...kept.values()];
  if (!values.length) return [];
  const top = Math.max(...values.map((v) => v.score));
  const exps = values.map((v) => Math.exp(v.score - top));
  const total = exps.reduce((a, b) => a + b, 0);
  return values.map((v, i) => ({ ...v, probability: exps[i] / total }));
}
