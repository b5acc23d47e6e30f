using ParetoQ.Trainer;

namespace ParetoQ.Runtime.Tests;

/// <summary>The vectorized float paths of the trainer's elementwise operations against the same operations run in
/// double (the reference the gradient checks use), on lengths with vector tails.</summary>
public sealed class TrainerFloatPathTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(33)]
    [InlineData(1000)]
    public void Cross_entropy_and_swiglu_in_float_match_double(int length)
    {
        var rng = new Random(length);
        double[] Values(int count, double scale) => [.. Enumerable.Range(0, count)
            .Select(_ => (rng.NextDouble() * 2 - 1) * scale)];
        float[] F(double[] v) => [.. v.Select(d => (float)d)];

        // Three positions, one masked: loss and gradient.
        int[] targets = [length - 1, -1, 0];
        double[] logits = Values(3 * length, 8);
        var dd = new double[logits.Length];
        var df = new float[logits.Length];
        double lossD = Ops<double>.CrossEntropy(logits, targets, length, 0.5, dd);
        float lossF = Ops<float>.CrossEntropy(F(logits), targets, length, 0.5f, df);
        Assert.Equal(lossD, lossF, 1e-5 * Math.Max(1, Math.Abs(lossD)));
        for (int i = 0; i < dd.Length; i++) Assert.Equal(dd[i], df[i], 1e-6);

        double[] gate = Values(length, 6), up = Values(length, 2), dh = Values(length, 1);
        var hD = new double[length];
        var hF = new float[length];
        Ops<double>.SwiGlu(gate, up, hD);
        Ops<float>.SwiGlu(F(gate), F(up), hF);
        for (int i = 0; i < length; i++) Assert.Equal(hD[i], hF[i], 1e-5 * Math.Max(1, Math.Abs(hD[i])));

        double[] dgD = Values(length, 1), duD = Values(length, 1);
        float[] dgF = F(dgD), duF = F(duD);
        Ops<double>.SwiGluBackward(dh, gate, up, dgD, duD);
        Ops<float>.SwiGluBackward(F(dh), F(gate), F(up), dgF, duF);
        for (int i = 0; i < length; i++)
        {
            Assert.Equal(dgD[i], dgF[i], 1e-5 * Math.Max(1, Math.Abs(dgD[i])));
            Assert.Equal(duD[i], duF[i], 1e-5 * Math.Max(1, Math.Abs(duD[i])));
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(33)]
    [InlineData(260)]
    public void Rms_norm_backward_in_float_matches_double(int dim)
    {
        var rng = new Random(dim);
        double[] Values(int count) => [.. Enumerable.Range(0, count).Select(_ => rng.NextDouble() * 2 - 1)];
        float[] F(double[] v) => [.. v.Select(d => (float)d)];
        int n = 3;
        double[] dy = Values(n * dim), x = Values(n * dim), weight = Values(dim), rstd = [0.5, 1.5, 3];
        double[] dxD = Values(n * dim), dwD = Values(dim);
        float[] dxF = F(dxD), dwF = F(dwD);
        Ops<double>.RmsNormBackward(dy, x, weight, rstd, n, dim, dxD, dwD);
        Ops<float>.RmsNormBackward(F(dy), F(x), F(weight), F(rstd), n, dim, dxF, dwF);
        for (int i = 0; i < dxD.Length; i++) Assert.Equal(dxD[i], dxF[i], 1e-5 * Math.Max(1, Math.Abs(dxD[i])));
        for (int i = 0; i < dim; i++) Assert.Equal(dwD[i], dwF[i], 1e-5 * Math.Max(1, Math.Abs(dwD[i])));
    }

    [Theory]
    [InlineData(9, 1, 4, 2, 8, 0)]
    [InlineData(17, 3, 6, 2, 12, 5)]
    [InlineData(5, 2, 3, 3, 4, 0)]
    public void Attention_forward_and_backward_in_float_match_double(int n, int sequences, int heads, int kvHeads,
        int headDim, int window)
    {
        var rng = new Random(n * 100 + heads);
        double[] Values(int count) => [.. Enumerable.Range(0, count).Select(_ => rng.NextDouble() * 2 - 1)];
        float[] F(double[] v) => [.. v.Select(d => (float)d)];
        int tokens = sequences * n;
        double[] q = Values(tokens * heads * headDim), k = Values(tokens * kvHeads * headDim),
            v = Values(tokens * kvHeads * headDim), dout = Values(tokens * heads * headDim);
        var (outD, probsD) = (new double[q.Length], new double[sequences * heads * n * n]);
        var (outF, probsF) = (new float[q.Length], new float[sequences * heads * n * n]);
        Ops<double>.Attention(q, k, v, n, sequences, heads, kvHeads, headDim, window, outD, probsD);
        Ops<float>.Attention(F(q), F(k), F(v), n, sequences, heads, kvHeads, headDim, window, outF, probsF);
        for (int i = 0; i < outD.Length; i++) Assert.Equal(outD[i], outF[i], 1e-5);
        for (int i = 0; i < probsD.Length; i++) Assert.Equal(probsD[i], probsF[i], 1e-5);

        double[] dqD = Values(q.Length), dkD = Values(k.Length), dvD = Values(v.Length);
        float[] dqF = F(dqD), dkF = F(dkD), dvF = F(dvD);
        Ops<double>.AttentionBackward(dout, q, k, v, probsD, n, sequences, heads, kvHeads, headDim, window, dqD, dkD,
            dvD);
        Ops<float>.AttentionBackward(F(dout), F(q), F(k), F(v), probsF, n, sequences, heads, kvHeads, headDim, window,
            dqF, dkF, dvF);
        for (int i = 0; i < dqD.Length; i++) Assert.Equal(dqD[i], dqF[i], 1e-4);
        for (int i = 0; i < dkD.Length; i++) Assert.Equal(dkD[i], dkF[i], 1e-4);
        for (int i = 0; i < dvD.Length; i++) Assert.Equal(dvD[i], dvF[i], 1e-4);
    }
}
