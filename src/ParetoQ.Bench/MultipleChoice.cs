using System.Text;
using System.Text.Json;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Bench;

/// <summary>One multiple-choice question: the context, its candidate continuations and the index of the right
/// one.</summary>
public sealed record ChoiceItem(int Line, string Context, IReadOnlyList<string> Choices, int Label);

/// <summary>Per item: each choice's log-likelihood and its UTF-8 length, and which choice each metric picked.</summary>
public sealed record ChoiceScore(ChoiceItem Item, double[] LogLikelihoods, int[] ChoiceBytes)
{
    /// <summary>Highest total log-likelihood (lm-evaluation-harness's <c>acc</c>).</summary>
    public int Picked => ArgMax(LogLikelihoods);
    /// <summary>Highest log-likelihood per byte of the choice (the harness's <c>acc_norm</c>).</summary>
    public int PickedNormalized => ArgMax(LogLikelihoods.Select((x, i) => x / Math.Max(1, ChoiceBytes[i])).ToArray());

    private static int ArgMax(double[] v) => Array.IndexOf(v, v.Max());
}

/// <summary>
/// Multiple-choice accuracy as the ParetoQ tables measure it (ARC, PIQA, HellaSwag style): every choice is scored by
/// the log-likelihood of its tokens after the context, and the most likely choice is the model's answer.
/// </summary>
public static class MultipleChoice
{
    private const int MaxLineBytes = 1 << 20;
    private const long MaxFileBytes = 256 << 20;

    /// <summary>
    /// Reads JSON lines of the form <c>{"context": "...", "choices": ["...", ...], "label": 0}</c> (an optional
    /// <c>"id"</c> is allowed). Choices are appended to the context as they are, so they carry their own leading space.
    /// Anything else (another field, a label out of range, fewer than two choices, invalid UTF-8) is an error naming
    /// the line.
    /// </summary>
    public static List<ChoiceItem> Read(string path)
    {
        var items = new List<ChoiceItem>();
        var utf8 = new UTF8Encoding(false, throwOnInvalidBytes: true);
        int number = 0;
        foreach (byte[] raw in Lines(InputFile.ReadAll(path, MaxFileBytes,
            problem => new InvalidDataException($"{path}: {problem}"))))
        {
            number++;
            string where = $"{path}:{number}";
            if (raw.Length > MaxLineBytes) throw new InvalidDataException($"{where}: line longer than {MaxLineBytes} bytes");
            string line;
            try { line = utf8.GetString(raw); }
            catch (DecoderFallbackException) { throw new InvalidDataException($"{where}: not valid UTF-8"); }
            if (line.Trim().Length == 0) continue;
            using (var doc = StrictJson.Parse(raw, 4, "the line",
                problem => new InvalidDataException($"{where}: {problem}")))
            {
                var root = doc.RootElement;
                if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: not a JSON object");
                string? context = null;
                List<string>? choices = null;
                int? label = null;
                foreach (var p in root.EnumerateObject())
                {
                    switch (p.Name)
                    {
                        case "context" when p.Value.ValueKind == JsonValueKind.String
                            && context is null: context = p.Value.GetString(); break;
                        case "choices" when p.Value.ValueKind == JsonValueKind.Array && choices is null:
                            choices = [];
                            foreach (var c in p.Value.EnumerateArray())
                                choices.Add(c.ValueKind == JsonValueKind.String && c.GetString()!.Length > 0
                                    ? c.GetString()!
                                    : throw new InvalidDataException($"{where}: every choice must be a non-empty string"));
                            break;
                        case "label" when p.Value.ValueKind == JsonValueKind.Number && label is null:
                            label = p.Value.TryGetInt32(out int l) ? l
                                : throw new InvalidDataException($"{where}: label must be an integer");
                            break;
                        case "id" when p.Value.ValueKind is JsonValueKind.String or JsonValueKind.Number: break;
                        default: throw new InvalidDataException($"{where}: unexpected or repeated field '{p.Name}' (expected context, choices, label and optionally id)");
                    }
                }
                if (context is null || choices is null
                    || label is null) throw new InvalidDataException($"{where}: needs \"context\" (string), \"choices\" (array of strings) and \"label\" (integer)");
                if (choices.Count < 2) throw new InvalidDataException($"{where}: needs at least 2 choices");
                if (label < 0
                    || label >= choices.Count) throw new InvalidDataException($"{where}: label {label} is not a choice index (0..{choices.Count - 1})");
                items.Add(new ChoiceItem(number, context, choices, label.Value));
            }
        }
        if (items.Count == 0) throw new InvalidDataException($"{path} holds no questions");
        return items;
    }

    /// <summary>Scores every choice of every item. Each choice is run after its full context, from a reset
    /// session.</summary>
    public static IEnumerable<ChoiceScore> Score(Session session, ITokenizer tokenizer, IEnumerable<ChoiceItem> items)
    {
        var logits = new float[session.MaxBatch * session.Config.VocabSize];
        foreach (var item in items)
        {
            // As lm-evaluation-harness does: the choice's tokens are those of context+choice past the context's own
            // tokens.
            int contextTokens = tokenizer.Encode(item.Context, addBos: true).Length;
            var scores = new double[item.Choices.Count];
            var bytes = new int[item.Choices.Count];
            for (int c = 0; c < item.Choices.Count; c++)
            {
                int[] ids = tokenizer.Encode(item.Context + item.Choices[c], addBos: true);
                if (ids.Length <= contextTokens) throw new InvalidDataException($"line {item.Line}: choice {c} adds no tokens to the context");
                if (ids.Length > session.ContextLength)
                    throw new InvalidDataException($"line {item.Line}: context and choice {c} are {ids.Length} tokens, more than the context length {session.ContextLength}");
                scores[c] = TokenScoring.LogLikelihood(session, ids, contextTokens, logits);
                bytes[c] = Encoding.UTF8.GetByteCount(item.Choices[c]);
            }
            yield return new ChoiceScore(item, scores, bytes);
        }
    }

    private static IEnumerable<byte[]> Lines(byte[] data)
    {
        int start = 0;
        for (int i = 0; i <= data.Length; i++)
        {
            if (i < data.Length && data[i] != (byte)'\n') continue;
            int end = i > start && data[i - 1] == (byte)'\r' ? i - 1 : i;
            if (i < data.Length || end > start) yield return data[start..end];
            start = i + 1;
        }
    }
}
