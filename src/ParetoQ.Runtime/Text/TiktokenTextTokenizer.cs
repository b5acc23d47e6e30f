using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace ParetoQ.Runtime.Text;

/// <summary>
/// tiktoken-style byte-level BPE (Llama-4 / MobileLLM-Pro): a ranks file ("base64-bytes rank" per line), the o200k
/// pre-tokenizer regex, and special tokens above the ranks. Encoding goes through Microsoft.ML.Tokenizers; the bytes of
/// each token (for decoding and streaming) come from the ranks file itself.
/// </summary>
public sealed partial class TiktokenTextTokenizer : ITokenizer
{
    private readonly TiktokenTokenizer _encoder;
    private readonly byte[][] _bytes;           // id → UTF-8 bytes; empty for specials and unused ids
    private readonly IReadOnlyDictionary<string, int> _specials;

    public int VocabSize => _bytes.Length;
    public int BosId { get; }

    /// <summary>The o200k pre-tokenizer: letter runs with case handling and contractions, 1–3 digit groups, punctuation
    /// runs, whitespace.</summary>
    [GeneratedRegex(@"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")]
    private static partial Regex O200kPattern();

    /// <param name="ranks">The ranks file.</param>
    /// <param name="specialTokens">Special token strings → ids (ids above every rank).</param>
    /// <param name="vocabSize">The model's vocabulary size; ids up to it that are neither ranks nor specials decode to
    /// nothing.</param>
    public TiktokenTextTokenizer(ReadOnlySpan<byte> ranks, IReadOnlyDictionary<string, int> specialTokens, int bosId,
        int vocabSize, string source)
    {
        var tokens = ParseRanks(ranks, source);
        int size = Math.Max(vocabSize, tokens.Count);
        foreach (var (name, id) in specialTokens)
        {
            if (id < tokens.Count) throw new TokenizerException(source,
                $"special token '{name}' has id {id}, which is an ordinary rank");
            size = Math.Max(size, id + 1);
        }
        _bytes = new byte[size][];
        for (int i = 0; i < size; i++) _bytes[i] = i < tokens.Count ? tokens[i] : [];
        _specials = specialTokens;
        BosId = bosId;
        try
        {
            using var stream = new MemoryStream(ranks.ToArray());
            _encoder = TiktokenTokenizer.Create(stream, new RegexPreTokenizer(O200kPattern(), null), normalizer: null,
                specialTokens: null);
        }
        catch (Exception e) when (e is ArgumentException or FormatException or InvalidOperationException)
        {
            throw new TokenizerException(source, $"tiktoken ranks rejected: {e.Message}");
        }
    }

    public IReadOnlyDictionary<string, int> SpecialTokens => _specials;

    // "base64 rank" per line, ranks 0..n−1 in order; anything else is refused with its line number.
    private static List<byte[]> ParseRanks(ReadOnlySpan<byte> ranks, string source)
    {
        var tokens = new List<byte[]>();
        int line = 0;
        foreach (var raw in Encoding.UTF8.GetString(ranks).Split('\n'))
        {
            line++;
            string text = raw.TrimEnd('\r');
            if (text.Length == 0) continue;
            int sp = text.IndexOf(' ');
            byte[] bytes;
            try { bytes = sp > 0 ? Convert.FromBase64String(text[..sp]) : throw new FormatException("no space"); }
            catch (FormatException) { throw new TokenizerException(source, $"ranks line {line} is not 'base64 rank'"); }
            if (!int.TryParse(text.AsSpan(sp + 1), out int rank) || rank != tokens.Count)
                throw new TokenizerException(source,
                    $"ranks line {line} has rank '{text[(sp + 1)..]}', expected {tokens.Count}");
            if (bytes.Length == 0 || bytes.Length > ITokenizer.MaxTokenBytes) throw new TokenizerException(source,
                $"ranks line {line} has {bytes.Length} bytes");
            tokens.Add(bytes);
        }
        if (tokens.Count < 256) throw new TokenizerException(source,
            $"ranks file has {tokens.Count} entries, fewer than the 256 single bytes");
        return tokens;
    }

    public int[] Encode(string text, bool addBos)
    {
        var ids = _encoder.EncodeToIds(text);
        if (!addBos || BosId < 0) return [.. ids];
        var result = new int[ids.Count + 1];
        result[0] = BosId;
        for (int i = 0; i < ids.Count; i++) result[i + 1] = ids[i];
        return result;
    }

    /// <summary>The id of a special token such as &lt;|eot|&gt;.</summary>
    public int Special(string name) =>
        _specials.TryGetValue(name, out int id) ? id
            : throw new KeyNotFoundException($"the tokenizer has no special token {name}");

    public int TokenBytes(int id, Span<byte> destination)
    {
        if ((uint)id >= (uint)_bytes.Length) throw new ArgumentOutOfRangeException(nameof(id), id,
            $"token id {id} is outside the vocabulary (0..{_bytes.Length - 1})");
        _bytes[id].CopyTo(destination);
        return _bytes[id].Length;
    }

    public string Decode(ReadOnlySpan<int> ids) => ITokenizer.ConcatenatedText(this, ids);
}
