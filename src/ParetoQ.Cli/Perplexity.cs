using ParetoQ.CommandLine;
using System.Text;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Generation;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Cli;

/// <summary>How a text longer than the context is cut into evaluated windows.</summary>
internal enum PerplexityMode
{
    /// <summary>
    /// Sliding windows of the context length, each starting half a context after the previous one; every token is
    /// scored once, in the first window that holds it after the overlap, so all but the first window's tokens see at
    /// least half a context of history.
    /// </summary>
    Windows,
    /// <summary>
    /// llama.cpp's protocol (<c>llama-perplexity -c N</c>): independent chunks of N tokens whose first token is
    /// replaced by BOS, scoring only each chunk's second half; needs at least 2N tokens, and a trailing partial chunk
    /// is dropped.
    /// </summary>
    Chunks,
}

internal static class Perplexity
{
    /// <summary>The largest text scored: about 16M tokens, hours of prefill on a laptop.</summary>
    public const long MaxTextBytes = 64 << 20;

    /// <summary>
    /// Scores the text and prints, as llama-perplexity does, the running perplexity after each chunk or window on
    /// stderr and the final estimate with its uncertainty: PPL ± PPL · sd(−log p) / √(n − 1) over the n scored
    /// tokens (llama-perplexity's formula, so the two ± compare). <paramref name="json"/>: one JSON object on stdout
    /// instead.
    /// </summary>
    public static int Run(Session session, ITokenizer tokenizer, string path, PerplexityMode mode, bool json)
    {
        byte[] bytes = InputFile.ReadAll(path, MaxTextBytes, problem => new InvalidDataException($"{path}: {problem}"));
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes); }
        catch (DecoderFallbackException e) { throw new InvalidDataException($"{path} is not valid UTF-8 (byte {e.Index})"); }
        int[] tokens = tokenizer.Encode(text, addBos: true);
        if (tokens.Length < 2) throw new InvalidDataException($"{path} has fewer than 2 tokens; nothing to score");

        if (session.ContextLength < 2) throw new UsageException("perplexity needs a context of at least 2 tokens");
        int window = session.ContextLength, stride = Math.Max(1, window / 2);
        var logits = new float[session.MaxBatch * session.Config.VocabSize];
        var nlls = new List<double>();
        double nllSum = 0; // Σ nlls, kept as they come: the running value must not re-add every token per chunk
        var running = new List<double>(); // perplexity after each chunk or window
        void Progress()
        {
            running.Add(Math.Exp(nllSum / nlls.Count));
            Console.Error.Write($"[{running.Count}]{running[^1]:F4},");
        }
        string protocol;
        if (mode == PerplexityMode.Chunks)
        {
            if (tokens.Length < 2 * window)
                throw new InvalidDataException($"{path} has {tokens.Length} tokens; chunked perplexity with a context of {window} needs at least {2 * window}");
            int first = window / 2;
            var chunk = new int[window];
            for (int begin = 0; begin + window <= tokens.Length; begin += window)
            {
                tokens.AsSpan(begin, window).CopyTo(chunk);
                if (tokenizer.BosId >= 0) chunk[0] = tokenizer.BosId;
                nllSum -= TokenScoring.LogLikelihood(session, chunk, first + 1, logits, nlls); // first+1 … window−1
                Progress();
            }
            protocol = $"{tokens.Length / window} chunks of {window}, second halves scored as llama-perplexity does";
        }
        else
        {
            for (int begin = 0, scoredEnd = 1; scoredEnd < tokens.Length; begin += stride)
            {
                int end = Math.Min(begin + window, tokens.Length);
                // targets scoredEnd … end−1
                nllSum -= TokenScoring.LogLikelihood(session, tokens.AsSpan(begin, end - begin), scoredEnd - begin,
                    logits, nlls);
                scoredEnd = end;
                Progress();
            }
            protocol = $"window {window}, stride {stride}";
        }
        Console.Error.WriteLine();
        double mean = nllSum / nlls.Count, ppl = Math.Exp(mean);
        double sd = nlls.Count < 2 ? 0 : Math.Sqrt(nlls.Sum(v => (v - mean) * (v - mean)) / nlls.Count);
        double uncertainty = nlls.Count < 2 ? 0 : ppl * sd / Math.Sqrt(nlls.Count - 1);
        if (!json)
        {
            Console.WriteLine(
                $"perplexity {ppl:F4} ± {uncertainty:F4} over {nlls.Count} tokens of {path} ({protocol})");
            return 0;
        }
        using var stdout = Console.OpenStandardOutput();
        using (var w = new System.Text.Json.Utf8JsonWriter(stdout))
        {
            w.WriteStartObject();
            w.WriteString("file", path);
            w.WriteString("mode", mode == PerplexityMode.Chunks ? "chunks" : "windows");
            w.WriteNumber("context", window);
            w.WriteNumber("tokens", nlls.Count);
            w.WriteNumber("perplexity", ppl);
            w.WriteNumber("uncertainty", uncertainty);
            w.WriteStartArray(mode == PerplexityMode.Chunks ? "running_by_chunk" : "running_by_window");
            foreach (double r in running) w.WriteNumberValue(r);
            w.WriteEndArray();
            w.WriteEndObject();
        }
        stdout.WriteByte((byte)'\n');
        return 0;
    }
}
