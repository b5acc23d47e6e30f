using ParetoQ.Runtime.Model;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// An independent dense forward pass over a whole sequence, in double precision, written straight from the formulas
/// (REFERENCE.md §3) with no code shared with the runtime's model or kernels. Returns logits (tokens, vocab).
/// </summary>
internal static class ReferenceTransformer
{
    public static double[,] Forward(ModelConfig c, IReadOnlyDictionary<string, float[]> w, int[] tokens)
    {
        int n = tokens.Length, d = c.HiddenSize, hd = c.HeadDim;
        var x = new double[n, d];
        var emb = w["model.embed_tokens.weight"];
        for (int t = 0; t < n; t++)
            for (int i = 0; i < d; i++) x[t, i] = emb[tokens[t] * d + i];

        double[] invFreq = InverseFrequencies(c);
        for (int layer = 0; layer < c.NumLayers * c.LayerRepeat; layer++)
        {
            int li = layer / c.LayerRepeat;
            string p = $"model.layers.{li}.";
            var h = Norm(x, w[p + "input_layernorm.weight"], c.RmsNormEps);
            var q = Linear(h, w[p + "self_attn.q_proj.weight"], c.NumHeads * hd);
            var k = Linear(h, w[p + "self_attn.k_proj.weight"], c.NumKvHeads * hd);
            var v = Linear(h, w[p + "self_attn.v_proj.weight"], c.NumKvHeads * hd);
            bool rope = c.RopeLayers[li];
            for (int t = 0; t < n; t++)
            {
                for (int head = 0; head < c.NumHeads; head++) Position(q, t, head * hd, hd, t, rope, invFreq, c);
                for (int head = 0; head < c.NumKvHeads; head++) Position(k, t, head * hd, hd, t, rope, invFreq, c);
                if (!rope && c.TemperatureTuning is { } tt)
                {
                    double s = Math.Log(Math.Floor((t + 1.0) / tt.FloorScale) + 1.0) * tt.AttnScale + 1.0;
                    for (int i = 0; i < c.NumHeads * hd; i++) q[t, i] *= s;
                }
            }

            var att = new double[n, c.NumHeads * hd];
            int group = c.NumHeads / c.NumKvHeads;
            for (int head = 0; head < c.NumHeads; head++)
            {
                int kvh = head / group;
                for (int t = 0; t < n; t++)
                {
                    var scores = new double[n];
                    double max = double.NegativeInfinity;
                    for (int j = 0; j < n; j++)
                    {
                        bool visible = j <= t && (c.LayerTypes[li] == AttentionKind.Global || t - j < c.SlidingWindow);
                        if (!visible) { scores[j] = double.NegativeInfinity; continue; }
                        double s = 0;
                        for (int i = 0; i < hd; i++) s += q[t, head * hd + i] * k[j, kvh * hd + i];
                        scores[j] = s / Math.Sqrt(hd);
                        max = Math.Max(max, scores[j]);
                    }
                    double sum = 0;
                    for (int j = 0; j < n; j++) sum += scores[j] = Math.Exp(scores[j] - max);
                    for (int j = 0; j < n; j++)
                        for (int i = 0; i < hd; i++) att[t, head * hd + i] += scores[j] / sum * v[j, kvh * hd + i];
                }
            }
            Accumulate(x, Linear(att, w[p + "self_attn.o_proj.weight"], d));

            h = Norm(x, w[p + "post_attention_layernorm.weight"], c.RmsNormEps);
            var gate = Linear(h, w[p + "mlp.gate_proj.weight"], c.IntermediateSize);
            var up = Linear(h, w[p + "mlp.up_proj.weight"], c.IntermediateSize);
            for (int t = 0; t < n; t++)
                for (int i = 0; i < c.IntermediateSize; i++)
                    gate[t, i] = gate[t, i] / (1 + Math.Exp(-gate[t, i])) * up[t, i];
            Accumulate(x, Linear(gate, w[p + "mlp.down_proj.weight"], d));
        }
        var final = Norm(x, w["model.norm.weight"], c.RmsNormEps);
        return Linear(final, w[c.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"], c.VocabSize);
    }

    private static void Position(double[,] m, int t, int offset, int hd, int pos, bool rope, double[] invFreq,
        ModelConfig c)
    {
        if (!rope) return;
        var src = new double[hd];
        for (int i = 0; i < hd; i++) src[i] = m[t, offset + i];
        for (int i = 0; i < hd / 2; i++)
        {
            // Angles are formed in single precision, as PyTorch forms them.
            double angle = (float)(pos * (float)invFreq[i]);
            double cos = Math.Cos(angle), sin = Math.Sin(angle);
            (int a, int b) = c.RopeLayout == RopeLayout.Interleaved ? (2 * i, 2 * i + 1) : (i, i + hd / 2);
            m[t, offset + a] = src[a] * cos - src[b] * sin;
            m[t, offset + b] = src[b] * cos + src[a] * sin;
        }
        if (c.UseQkNorm)
        {
            double ss = 0;
            for (int i = 0; i < hd; i++) ss += m[t, offset + i] * m[t, offset + i];
            double inv = 1 / Math.Sqrt(ss / hd + c.RmsNormEps);
            for (int i = 0; i < hd; i++) m[t, offset + i] *= inv;
        }
    }

    private static double[] InverseFrequencies(ModelConfig c)
    {
        var f = new double[c.HeadDim / 2];
        for (int i = 0; i < f.Length; i++)
        {
            double freq = Math.Pow(c.RopeTheta, -(2.0 * i) / c.HeadDim);
            if (c.RopeScaling is { } s)
            {
                double wavelen = 2 * Math.PI / freq;
                double ratio = s.OriginalMaxPositionEmbeddings / wavelen;
                if (ratio < s.LowFreqFactor) freq /= s.Factor;
                else if (ratio <= s.HighFreqFactor)
                {
                    double smooth = (ratio - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    freq = (1 - smooth) * freq / s.Factor + smooth * freq;
                }
            }
            f[i] = freq;
        }
        return f;
    }

    private static double[,] Norm(double[,] x, float[] weight, double eps)
    {
        int n = x.GetLength(0), d = x.GetLength(1);
        var y = new double[n, d];
        for (int t = 0; t < n; t++)
        {
            double ss = 0;
            for (int i = 0; i < d; i++) ss += x[t, i] * x[t, i];
            double inv = 1 / Math.Sqrt(ss / d + eps);
            for (int i = 0; i < d; i++) y[t, i] = x[t, i] * inv * weight[i];
        }
        return y;
    }

    // y (n, outDim) = x (n, inDim) · Wᵀ with W row-major (outDim, inDim).
    private static double[,] Linear(double[,] x, float[] weight, int outDim)
    {
        int n = x.GetLength(0), inDim = x.GetLength(1);
        var y = new double[n, outDim];
        for (int t = 0; t < n; t++)
            for (int o = 0; o < outDim; o++)
            {
                double s = 0;
                for (int i = 0; i < inDim; i++) s += x[t, i] * weight[o * inDim + i];
                y[t, o] = s;
            }
        return y;
    }

    private static void Accumulate(double[,] x, double[,] y)
    {
        for (int t = 0; t < x.GetLength(0); t++)
            for (int i = 0; i < x.GetLength(1); i++) x[t, i] += y[t, i];
    }
}
