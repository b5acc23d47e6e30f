using ParetoQ.Runtime.Model;

namespace ParetoQ.Runtime.Generation;

/// <summary>How likely a model finds given tokens: the basis of perplexity and multiple-choice scoring.</summary>
public static class TokenScoring
{
    /// <summary>−log softmax(<paramref name="logits"/>)[<paramref name="target"/>], accumulated in double.</summary>
    public static double NegativeLogLikelihood(ReadOnlySpan<float> logits, int target)
    {
        float max = float.NegativeInfinity;
        foreach (float l in logits) max = MathF.Max(max, l);
        double sum = 0;
        foreach (float l in logits) sum += Math.Exp(l - max);
        return Math.Log(sum) - (logits[target] - max);
    }

    /// <summary>
    /// Σ log p(tokens[i] | tokens[..i]) over i in [<paramref name="from"/>, tokens.Length), running
    /// <paramref name="session"/> (opened with <see cref="SessionOptions.AllLogits"/>) from a reset over all of
    /// <paramref name="tokens"/>. <paramref name="logits"/> holds MaxBatch × vocab floats. Each scored token's
    /// −log p is also added to <paramref name="tokenNlls"/> when given (for the spread of a perplexity).
    /// </summary>
    public static double LogLikelihood(Session session, ReadOnlySpan<int> tokens, int from, float[] logits,
        List<double>? tokenNlls = null)
    {
        if (from < 1 || from > tokens.Length) throw new ArgumentOutOfRangeException(nameof(from), from,
            $"scored tokens must start within 1..{tokens.Length}");
        int vocab = session.Config.VocabSize;
        double sum = 0;
        session.Reset();
        for (int start = 0; start < tokens.Length - 1; start += session.MaxBatch)
        {
            int n = Math.Min(session.MaxBatch, tokens.Length - 1 - start); // the last token predicts nothing we score
            session.Forward(tokens.Slice(start, n), logits);
            for (int i = 0; i < n; i++)
            {
                if (start + i + 1 < from) continue;
                double nll = NegativeLogLikelihood(logits.AsSpan(i * vocab, vocab), tokens[start + i + 1]);
                sum -= nll;
                tokenNlls?.Add(nll);
            }
        }
        return sum;
    }
}
