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
}
