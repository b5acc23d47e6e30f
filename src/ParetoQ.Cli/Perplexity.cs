using System.Text;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Cli;

/// <summary>
/// Perplexity over a text file with sliding windows: each window is the session's context length and starts half a
/// context after the previous one; a token is scored once, in the first window that contains it after the overlap, so
/// every token but those of the first window is predicted from at least half a context of history.
/// </summary>
internal static class Perplexity
{
    public static int Run(Session session, ITokenizer tokenizer, string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        string text;
        try { text = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes); }
        catch (DecoderFallbackException e) { throw new ArgumentException($"{path} is not valid UTF-8 (byte {e.Index})"); }
        int[] tokens = tokenizer.Encode(text, addBos: true);
        if (tokens.Length < 2) throw new ArgumentException($"{path} has fewer than 2 tokens; nothing to score");

        if (session.ContextLength < 2) throw new ArgumentException("perplexity needs a context of at least 2 tokens");
        int window = session.ContextLength, stride = Math.Max(1, window / 2), vocab = session.Config.VocabSize;
        var logits = new float[session.MaxBatch * vocab];
        double nll = 0;
        long scored = 0;
        for (int begin = 0, scoredEnd = 1; scoredEnd < tokens.Length; begin += stride)
        {
            int end = Math.Min(begin + window, tokens.Length);
            session.Reset();
            for (int start = begin; start < end; start += session.MaxBatch)
            {
                int n = Math.Min(session.MaxBatch, end - start);
                session.Forward(tokens.AsSpan(start, n), logits);
                for (int i = 0; i < n; i++)
                {
                    int target = start + i + 1; // logits after token start+i predict token start+i+1
                    if (target < scoredEnd || target >= end) continue;
                    nll += NegativeLogLikelihood(logits.AsSpan(i * vocab, vocab), tokens[target]);
                    scored++;
                }
            }
            scoredEnd = end;
        }
        double ppl = Math.Exp(nll / scored);
        Console.WriteLine($"perplexity {ppl:F4} over {scored} tokens of {path} (window {window}, stride {stride})");
        return 0;
    }

    private static double NegativeLogLikelihood(ReadOnlySpan<float> logits, int target)
    {
        float max = float.NegativeInfinity;
        foreach (float l in logits) max = MathF.Max(max, l);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        return Math.Log(sum) - (logits[target] - max);
    }
}
