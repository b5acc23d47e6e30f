using System.Text;
using System.Text.Json;
using ParetoQ.Runtime.Format;

namespace ParetoQ.Runtime.Text;

/// <summary>
/// SentencePiece-style BPE (LLaMA-1/2, Mistral): spaces become "▁", a "▁" dummy prefix is prepended, adjacent symbols
/// are merged by merge rank (leftmost pair first on ties, as sentencepiece does), and characters outside the vocabulary
/// fall back to their UTF-8 bytes as &lt;0xXX&gt; tokens. Read from a Hugging Face tokenizer.json or a SentencePiece
/// tokenizer.model.
/// </summary>
/// <remarks>
/// Microsoft.ML.Tokenizers 2.0.1's SentencePiece BPE merges the rightmost of two equal-rank pairs first, which differs
/// from LLaMA's reference on runs such as "FFF" or indentation; hence this encoder.
/// </remarks>
public sealed partial class SentencePieceBpeTokenizer : ITokenizer
{
    private const char Space = '\u2581';
    /// <summary>The largest tokenizer.json read (LLaMA-3's is 9 MB).</summary>
    public const long MaxJsonBytes = 16 << 20;
    private readonly string[] _pieces;                              // id → piece
    private readonly Dictionary<string, int> _ids;                  // piece → id
    private readonly Dictionary<(int Left, int Right), (int Rank, int Merged)> _merges;
    private readonly int[] _byteIds;                                // byte → id of <0xXX>, −1 when absent
    private readonly int[] _byteOfId;                               // id → byte for <0xXX> pieces, −1 otherwise
    private readonly bool[] _control;                               // ids that decode to nothing

    public int VocabSize => _pieces.Length;
    public int BosId { get; }
    public int UnknownId { get; }

    private SentencePieceBpeTokenizer(string[] pieces, Dictionary<string, int> ids, Dictionary<(int, int),
        (int, int)> merges, bool[] control, int bosId, int unknownId)
    {
        _pieces = pieces;
        _ids = ids;
        _merges = merges;
        _control = control;
        BosId = bosId;
        UnknownId = unknownId;
        _byteIds = new int[256];
        _byteOfId = new int[pieces.Length];
        Array.Fill(_byteIds, -1);
        Array.Fill(_byteOfId, -1);
        for (int b = 0; b < 256; b++)
            if (ids.TryGetValue($"<0x{b:X2}>", out int id)) { _byteIds[b] = id; _byteOfId[id] = b; }
    }

    /// <summary>Reads a tokenizer.json whose model is SentencePiece-style BPE with byte fallback (LLaMA-2,
    /// Mistral).</summary>
    public static SentencePieceBpeTokenizer FromHuggingFaceJson(ReadOnlySpan<byte> json, string source)
    {
        using (var doc = StrictJson.Parse(json.ToArray(), 64, "tokenizer.json", msg
            => new TokenizerException(source, msg)))
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("model", out var model)
                || model.ValueKind != JsonValueKind.Object)
                throw new TokenizerException(source, "tokenizer.json has no 'model' object");
            string type = model.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String
                ? t.GetString()! : "";
            if (type != "BPE") throw new TokenizerException(source,
                $"model type '{type}' is not supported here (expected BPE)");
            if (!model.TryGetProperty("byte_fallback", out var bf) || bf.ValueKind != JsonValueKind.True)
                throw new TokenizerException(source, "only byte_fallback BPE (SentencePiece style) is supported");
            CheckNormalizer(root, source);

            if (!model.TryGetProperty("vocab", out var vocab) || vocab.ValueKind != JsonValueKind.Object)
                throw new TokenizerException(source, "model.vocab is missing");
            var ids = new Dictionary<string, int>(StringComparer.Ordinal);
            foreach (var p in vocab.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.Number || !p.Value.TryGetInt32(out int id) || id < 0
                    || id >= 1 << 24)
                    throw new TokenizerException(source, $"vocab entry '{p.Name}' has an invalid id");
                if (!ids.TryAdd(p.Name, id)) throw new TokenizerException(source,
                    $"vocab entry '{p.Name}' appears twice");
            }
            var pieces = new string[ids.Count];
            foreach (var (piece, id) in ids)
            {
                if (Encoding.UTF8.GetByteCount(piece) > ITokenizer.MaxTokenBytes) throw new TokenizerException(source,
                    $"piece {id} is longer than {ITokenizer.MaxTokenBytes} bytes");
                if (id >= pieces.Length || pieces[id] is not null) throw new TokenizerException(source,
                    $"vocab ids are not 0..{pieces.Length - 1} without gaps (id {id})");
                pieces[id] = piece;
            }

            var merges = new Dictionary<(int, int), (int, int)>();
            if (!model.TryGetProperty("merges", out var mergeList) || mergeList.ValueKind != JsonValueKind.Array)
                throw new TokenizerException(source, "model.merges is missing");
            int rank = 0;
            foreach (var m in mergeList.EnumerateArray())
            {
                // Either "left right" or ["left", "right"] (newer tokenizers library versions).
                string? left = null, right = null;
                if (m.ValueKind == JsonValueKind.String)
                {
                    string s = m.GetString()!;
                    int sp = s.IndexOf(' ');
                    if (sp > 0) { left = s[..sp]; right = s[(sp + 1)..]; }
                }
                else if (m.ValueKind == JsonValueKind.Array && m.GetArrayLength() == 2
                    && m[0].ValueKind == JsonValueKind.String && m[1].ValueKind == JsonValueKind.String)
                {
                    left = m[0].GetString();
                    right = m[1].GetString();
                }
                if (left is null || right is null) throw new TokenizerException(source,
                    $"merge #{rank} is not a pair: {m.GetRawText()}");
                if (!ids.TryGetValue(left, out int l) || !ids.TryGetValue(right, out int r)
                    || !ids.TryGetValue(left + right, out int merged))
                    throw new TokenizerException(source,
                        $"merge #{rank} '{left} {right}' uses or makes a piece outside the vocabulary");
                merges.TryAdd((l, r), (rank, merged));
                rank++;
            }

            var control = new bool[pieces.Length];
            if (root.TryGetProperty("added_tokens", out var added) && added.ValueKind != JsonValueKind.Null)
            {
                if (added.ValueKind != JsonValueKind.Array) throw new TokenizerException(source,
                    "added_tokens must be an array");
                int index = 0;
                foreach (var a in added.EnumerateArray())
                {
                    // Every entry is checked, not skipped: an id this vocabulary lacks would be a token nobody can
                    // decode.
                    if (a.ValueKind != JsonValueKind.Object || !a.TryGetProperty("id", out var idEl)
                        || idEl.ValueKind != JsonValueKind.Number || !idEl.TryGetInt32(out int id)
                        || !a.TryGetProperty("content", out var content)
                        || content.ValueKind != JsonValueKind.String)
                        throw new TokenizerException(source,
                            $"added_tokens[{index}] needs an integer id and a content string");
                    if ((uint)id >= (uint)pieces.Length) throw new TokenizerException(source,
                        $"added token '{content.GetString()}' has id {id}, outside model.vocab (0..{pieces.Length - 1})");
                    if (content.GetString() != pieces[id]) throw new TokenizerException(source,
                        $"added token '{content.GetString()}' has id {id}, which model.vocab gives to '{pieces[id]}'");
                    if (a.TryGetProperty("special",
                        out var sp) && sp.ValueKind == JsonValueKind.True) control[id] = true;
                    index++;
                }
            }
            int unk = ids.GetValueOrDefault(model.TryGetProperty("unk_token", out var u)
                && u.ValueKind == JsonValueKind.String ? u.GetString()! : "<unk>", -1);
            int bos = ids.GetValueOrDefault("<s>", -1);
            return new SentencePieceBpeTokenizer(pieces, ids, merges, control, bos, unk);
        }
    }

    // The LLaMA normalizer: Prepend("▁") then Replace(" " → "▁"). Anything else would tokenize differently, so refuse
    // it.
    private static void CheckNormalizer(JsonElement root, string source)
    {
        string expected = """{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]}""";
        string actual = root.TryGetProperty("normalizer", out var n) ? JsonSerializeCompact(n) : "null";
        if (actual != expected) throw new TokenizerException(source,
            $"unsupported normalizer {actual} (expected the LLaMA Prepend ▁ + Replace form)");
        if (root.TryGetProperty("pre_tokenizer", out var pt) && pt.ValueKind != JsonValueKind.Null)
            throw new TokenizerException(source,
                $"unsupported pre_tokenizer {JsonSerializeCompact(pt)} (expected null)");
    }

    private static string JsonSerializeCompact(JsonElement e)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms,
            new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
            e.WriteTo(w);
        return Encoding.UTF8.GetString(ms.ToArray());
    }

    /// <summary>
    /// The vocabulary as SentencePiece pieces, for formats that store one (GGUF). Scores reproduce this encoder under
    /// sentencepiece's rule, where the adjacent pair whose concatenation scores highest merges first: a piece scores
    /// minus the rank of the best merge that makes it, and pieces no merge makes score below every merge.
    /// </summary>
    public SentencePiece[] Pieces()
    {
        var rank = new int[_pieces.Length];
        Array.Fill(rank, int.MaxValue);
        foreach (var (r, merged) in _merges.Values) rank[merged] = Math.Min(rank[merged], r);
        int unmade = _merges.Count == 0 ? 0 : _merges.Values.Max(m => m.Rank) + 1;
        var result = new SentencePiece[_pieces.Length];
        for (int id = 0; id < _pieces.Length; id++)
        {
            PieceType type = id == UnknownId ? PieceType.Unknown : _control[id] ? PieceType.Control : _byteOfId[id] >= 0
                ? PieceType.Byte : PieceType.Normal;
            result[id] = new SentencePiece(_pieces[id], -(rank[id] == int.MaxValue ? unmade : rank[id]), type);
        }
        return result;
    }

    public int[] Encode(string text, bool addBos)
    {
        var output = new List<int>(text.Length / 3 + 2);
        if (addBos && BosId >= 0) output.Add(BosId);
        if (text.Length == 0) return [.. output];
        string normalized = Space + text.Replace(' ', Space);

        // One symbol per code point; symbols form a linked list so merges are O(1).
        int n = 0;
        var start = new int[normalized.Length];
        var length = new int[normalized.Length];
        for (int i = 0; i < normalized.Length; i += length[n - 1])
        {
            start[n] = i;
            length[n++] = char.IsHighSurrogate(normalized[i]) && i + 1 < normalized.Length
                && char.IsLowSurrogate(normalized[i + 1]) ? 2 : 1;
        }
        var ids = new int[n];
        var prev = new int[n];
        var next = new int[n];
        for (int i = 0; i < n; i++)
        {
            ids[i] = _ids.GetValueOrDefault(normalized.Substring(start[i], length[i]), -1);
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }

        // Candidate merges ordered by (rank, left position): the leftmost of equal-rank pairs wins.
        var queue = new PriorityQueue<(int Left, int Right, int LeftId, int RightId), (int Rank, int Left)>();
        void Offer(int left)
        {
            int right = left < 0 ? -1 : next[left];
            if (right < 0 || ids[left] < 0 || ids[right] < 0) return;
            if (_merges.TryGetValue((ids[left], ids[right]), out var m)) queue.Enqueue((left, right, ids[left],
                ids[right]), (m.Rank, left));
        }
        for (int i = 0; i < n - 1; i++) Offer(i);
        while (queue.TryDequeue(out var c, out _))
        {
            // Skip stale candidates: a side was merged away or changed since it was queued.
            if (next[c.Left] != c.Right || ids[c.Left] != c.LeftId || ids[c.Right] != c.RightId) continue;
            ids[c.Left] = _merges[(c.LeftId, c.RightId)].Merged;
            length[c.Left] += length[c.Right];
            next[c.Left] = next[c.Right];
            if (next[c.Right] >= 0) prev[next[c.Right]] = c.Left;
            ids[c.Right] = -2; // dead
            Offer(prev[c.Left]);
            Offer(c.Left);
        }

        Span<byte> utf8 = stackalloc byte[8];
        for (int i = 0; i >= 0 && i < n; i = next[i])
        {
            if (ids[i] >= 0)
            {
                output.Add(ids[i]);
                continue;
            }
            int count = Encoding.UTF8.GetBytes(normalized.AsSpan(start[i], length[i]), utf8);
            for (int b = 0; b < count; b++) output.Add(_byteIds[utf8[b]] >= 0 ? _byteIds[utf8[b]] : UnknownId);
        }
        return [.. output];
    }

    public int TokenBytes(int id, Span<byte> destination)
    {
        if ((uint)id >= (uint)_pieces.Length) throw new ArgumentOutOfRangeException(nameof(id), id,
            $"token id {id} is outside the vocabulary (0..{_pieces.Length - 1})");
        if (_control[id]) return 0;
        if (_byteOfId[id] >= 0)
        {
            destination[0] = (byte)_byteOfId[id];
            return 1;
        }
        string piece = _pieces[id];
        int written = 0;
        foreach (var rune in piece.EnumerateRunes())
            written += (rune.Value == Space ? new Rune(' ') : rune).EncodeToUtf8(destination[written..]);
        return written;
    }

    public string Decode(ReadOnlySpan<int> ids)
    {
        string text = ITokenizer.ConcatenatedText(this, ids);
        // The dummy prefix: the sequence's first space came from the normalizer, not from the user.
        return text.StartsWith(' ') ? text[1..] : text;
    }
}
