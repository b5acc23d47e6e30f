using ParetoQ.Runtime.Quantization;
using ParetoQ.Trainer;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// Every operation's backward against central finite differences in double precision, on small odd shapes: the loss is
/// Σ y·r for a fixed random r, so the analytic gradient is the backward of dy = r. The fake-quantizer's gradients are
/// straight-through by definition (no finite difference exists), so they are checked against hand-computed values.
/// </summary>
public sealed class TrainerGradientTests
{
    private static double[] Random(Random rng, int n, double scale = 1)
        => Enumerable.Range(0, n).Select(_ => (rng.NextDouble() * 2 - 1) * scale).ToArray();

    private static double Dot(double[] a, double[] b) => a.Zip(b, (x, y) => x * y).Sum();

    // Central differences of loss() with respect to every element of input, against the analytic gradient.
    private static void CheckGradient(string name, double[] input, double[] analytic, Func<double> loss)
    {
        const double eps = 1e-6;
        for (int i = 0; i < input.Length; i++)
        {
            double saved = input[i];
            input[i] = saved + eps;
            double plus = loss();
            input[i] = saved - eps;
            double minus = loss();
            input[i] = saved;
            double numeric = (plus - minus) / (2 * eps);
            Assert.True(Math.Abs(numeric - analytic[i]) <= 1e-6 * Math.Max(1, Math.Abs(numeric)),
                $"{name}[{i}]: analytic {analytic[i]}, numeric {numeric}");
        }
    }

    [Fact]
    public void MatMul_backward_matches_finite_differences()
    {
        var rng = new Random(1);
        int n = 3, inDim = 5, outDim = 4;
        double[] x = Random(rng, n * inDim), w = Random(rng, outDim * inDim), r = Random(rng, n * outDim);
        double Loss() { var y = new double[n * outDim]; Ops<double>.MatMul(x, w, n, inDim, outDim, y); return Dot(y,
            r); }
        var dx = new double[x.Length];
        var dw = new double[w.Length];
        Ops<double>.MatMulBackward(r, x, w, n, inDim, outDim, dx, dw);
        CheckGradient("dx", x, dx, Loss);
        CheckGradient("dw", w, dw, Loss);
    }

    [Fact]
    public void RmsNorm_backward_matches_finite_differences()
    {
        var rng = new Random(2);
        int n = 3, dim = 7;
        double[] x = Random(rng, n * dim), weight = Random(rng, dim), r = Random(rng, n * dim);
        double Loss() { var y = new double[n * dim]; Ops<double>.RmsNorm(x, weight, n, dim, 1e-5, y,
            new double[n]); return Dot(y, r); }
        var rstd = new double[n];
        Ops<double>.RmsNorm(x, weight, n, dim, 1e-5, new double[n * dim], rstd);
        var dx = new double[x.Length];
        var dweight = new double[dim];
        Ops<double>.RmsNormBackward(r, x, weight, rstd, n, dim, dx, dweight);
        CheckGradient("dx", x, dx, Loss);
        CheckGradient("dweight", weight, dweight, Loss);
    }

    [Fact]
    public void SwiGlu_backward_matches_finite_differences()
    {
        var rng = new Random(3);
        double[] gate = Random(rng, 11, 3), up = Random(rng, 11), r = Random(rng, 11);
        double Loss() { var h = new double[11]; Ops<double>.SwiGlu(gate, up, h); return Dot(h, r); }
        var dgate = new double[11];
        var dup = new double[11];
        Ops<double>.SwiGluBackward(r, gate, up, dgate, dup);
        CheckGradient("dgate", gate, dgate, Loss);
        CheckGradient("dup", up, dup, Loss);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Rope_backward_is_the_inverse_rotation(bool interleaved)
    {
        var rng = new Random(4);
        int n = 3, heads = 2, hd = 8;
        double[] invFreq = Enumerable.Range(0, hd / 2).Select(i => Math.Pow(10000, -2.0 * i / hd)).ToArray();
        double[] x = Random(rng, n * heads * hd), r = Random(rng, x.Length);
        double Loss() { var y = (double[])x.Clone(); Ops<double>.Rope(invFreq, n, 1, heads, hd, 5, interleaved, false,
            y); return Dot(y, r); }
        var dx = (double[])r.Clone();
        Ops<double>.Rope(invFreq, n, 1, heads, hd, 5, interleaved, inverse: true, dx);
        CheckGradient("dx", x, dx, Loss);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    public void Attention_backward_matches_finite_differences(int window)
    {
        var rng = new Random(5 + window);
        int n = 5, heads = 4, kvHeads = 2, hd = 3;
        double[] q = Random(rng, n * heads * hd), k = Random(rng, n * kvHeads * hd), v = Random(rng, n * kvHeads * hd),
            r = Random(rng, n * heads * hd);
        double Loss() { var o = new double[q.Length]; Ops<double>.Attention(q, k, v, n, 1, heads, kvHeads, hd, window, o,
            new double[heads * n * n]); return Dot(o, r); }
        var probs = new double[heads * n * n];
        Ops<double>.Attention(q, k, v, n, 1, heads, kvHeads, hd, window, new double[q.Length], probs);
        var dq = new double[q.Length];
        var dk = new double[k.Length];
        var dv = new double[v.Length];
        Ops<double>.AttentionBackward(r, q, k, v, probs, n, 1, heads, kvHeads, hd, window, dq, dk, dv);
        CheckGradient("dq", q, dq, Loss);
        CheckGradient("dk", k, dk, Loss);
        CheckGradient("dv", v, dv, Loss);
        // The window really masks: with window 3, the last query's probabilities of keys 0 and 1 are 0.
        if (window == 3) Assert.Equal(0, probs[(0 * n + 4) * n + 1]);
    }

    [Fact]
    public void Embedding_and_cross_entropy_backward_match_finite_differences()
    {
        var rng = new Random(6);
        int vocab = 7, dim = 3;
        int[] tokens = [2, 5, 2, 0];
        int[] targets = [5, -1, 0, 3]; // −1: not scored
        double[] table = Random(rng, vocab * dim), r = Random(rng, tokens.Length * dim);
        double EmbedLoss() { var x = new double[tokens.Length * dim]; Ops<double>.Embed(tokens, table, dim,
            x); return Dot(x, r); }
        var dtable = new double[table.Length];
        Ops<double>.EmbedBackward(tokens, r, dim, dtable);
        CheckGradient("dtable", table, dtable, EmbedLoss);

        double[] logits = Random(rng, targets.Length * vocab, 3);
        double CeLoss() => Ops<double>.CrossEntropy(logits, targets, vocab, 1, new double[logits.Length]);
        var dlogits = new double[logits.Length];
        double loss = Ops<double>.CrossEntropy(logits, targets, vocab, 1, dlogits);
        CheckGradient("dlogits", logits, dlogits, CeLoss);
        double expected = new[] { 0, 2, 3 }.Average(t =>
        {
            var row = logits.Skip(t * vocab).Take(vocab).ToArray();
            return Math.Log(row.Sum(Math.Exp)) - row[targets[t]];
        });
        Assert.Equal(expected, loss, 12);
        Assert.All(dlogits.Skip(vocab).Take(vocab), g => Assert.Equal(0, g)); // the masked position gets no gradient
    }

    [Fact]
    public void Distillation_gradient_matches_finite_differences_and_vanishes_at_the_teacher()
    {
        var rng = new Random(8);
        int vocab = 6;
        int[] targets = [1, -1, 4];
        double[] student = Random(rng, 3 * vocab, 2), teacher = Random(rng, 3 * vocab, 2);
        double Loss() => Ops<double>.Distillation(student, teacher, targets, vocab, 1, new double[student.Length]);
        var grad = new double[student.Length];
        double kl = Ops<double>.Distillation(student, teacher, targets, vocab, 1, grad);
        Assert.True(kl > 0);
        CheckGradient("dstudent", student, grad, Loss);
        Assert.All(grad.Skip(vocab).Take(vocab), g => Assert.Equal(0, g));
        var same = new double[student.Length];
        Assert.Equal(0, Ops<double>.Distillation(teacher, teacher, targets, vocab, 1, same), 12);
        Assert.All(same, g => Assert.Equal(0, g, 12));
    }

    // Hand-computed from REFERENCE.md §1 (the working is in the comments): dwq = [1, 2, 3, 4] (binary: 2 rows of 3).
    [Theory]
    [InlineData(WeightFormat.Ternary, new[] { 0.5f, -1.2f, 0.2f, 0.995f }, 1.0f, new[] { 1f, 0, 3, 0 }, 0.7833333)]
    // t = .5, −1.2, .2, .995; inside |t| ≤ .99: 1,0,1,0; κ = (1/1.5 − .5), −1, (0 − .2), +1; Σ = 1.5666667; gs = 1/√4
    [InlineData(WeightFormat.Q2Seq, new[] { 0.3f, -0.9f, 1.99f, -2.5f }, 2.0f, new[] { 1f, 2, 0, 0 }, -0.125)]
    // t = .15, −.45, .995, −1.25; κ = (.25 − .15), (−.25 + .45), +.75, −.75; Σ = .1 + .4 + 2.25 − 3 = −.25; gs = 1/2
    [InlineData(WeightFormat.Q3Row, new[] { 0.6f, -2.5f, 1.9f, 0.24f }, 0.5f, new[] { 1f, 0, 0, 4 }, -0.3233162)]
    // t = 1.2, −5, 3.8, .48; κ = −.2, Qn = −4, Qp = 3, −.48; Σ = −1.12; gs = 1/√(4·3)
    [InlineData(WeightFormat.Q4Row, new[] { 0.26f, -0.95f, 0.74f, 0.03f }, 0.1f, new[] { 1f, 0, 0, 4 }, 0.7937254)]
    // t = 2.6, −9.5, 7.4, .3; κ = .4, −8, 7, −.3; Σ = 4.2; gs = 1/√(4·7)
    public void Fake_quant_gradients_match_hand_computed_values(WeightFormat format, float[] w, float alpha,
        float[] expectedDw, double expectedDalpha)
    {
        var dw = new float[4];
        var dalpha = new float[1];
        FakeQuantizer.Backward(format, w, [alpha], [1f, 2, 3, 4], dw, dalpha, 1, 4);
        Assert.Equal(expectedDw, dw);
        Assert.Equal(expectedDalpha, dalpha[0], 5);
    }

    [Fact]
    public void Binary_fake_quant_gradient_uses_the_sign_and_a_clamped_alpha_gets_none()
    {
        // Row 0: α .4, t = 1.25, −.5, 0 → dw = 0, 2, 3; κ = sign(W) = 1, −1, 0 → Σ = −1. Row 1: α 1, t = 1.5, −3, .1 →
        // dw = 0, 0, 6; Σ = 4 − 5 + 6 = 5. gs = 1/√(6·1).
        float[] w = [0.5f, -0.2f, 0f, 1.5f, -3f, 0.1f];
        var dw = new float[6];
        var dalpha = new float[2];
        FakeQuantizer.Backward(WeightFormat.Binary, w, [0.4f, 1f], [1f, 2, 3, 4, 5, 6], dw, dalpha, 2, 3);
        Assert.Equal([0f, 2, 3, 0, 0, 6], dw);
        Assert.Equal(-1 / Math.Sqrt(6), dalpha[0], 5);
        Assert.Equal(5 / Math.Sqrt(6), dalpha[1], 5);

        var forward = new float[6];
        FakeQuantizer.Forward(WeightFormat.Binary, w, [0.4f, 1f], forward, 2, 3);
        Assert.Equal([0.4f, -0.4f, 0f, 1f, -1f, 1f], forward);

        dalpha = new float[1];
        FakeQuantizer.Backward(WeightFormat.Q2Seq, [0.1f, 0.2f], [0f], [1f, 1f], new float[2], dalpha, 1, 2);
        Assert.Equal(0, dalpha[0]);
        Assert.Throws<ArgumentException>(()
            => FakeQuantizer.Backward(WeightFormat.I8Row, w, [1f], w, dw, dalpha, 1, 6));
    }
}

/// <summary>The float GEMM path of the trainer's matmuls against the generic loops run in double, on odd shapes and
/// tails.</summary>
public sealed class TrainerGemmTests
{
    [Theory]
    [InlineData(1, 1, 1)]
    [InlineData(3, 5, 7)]
    [InlineData(4, 16, 9)]
    [InlineData(5, 17, 33)]
    [InlineData(9, 40, 31)]
    [InlineData(13, 64, 100)]
    public void Float_matmuls_match_the_double_reference(int n, int inDim, int outDim)
    {
        var rng = new Random(n * 1000 + inDim * 10 + outDim);
        double[] x = [.. Enumerable.Range(0, n * inDim).Select(_ => rng.NextDouble() - 0.5)];
        double[] w = [.. Enumerable.Range(0, outDim * inDim).Select(_ => rng.NextDouble() - 0.5)];
        double[] dy = [.. Enumerable.Range(0, n * outDim).Select(_ => rng.NextDouble() - 0.5)];
        float[] F(double[] v) => [.. v.Select(d => (float)d)];

        var y = new double[n * outDim];
        Ops<double>.MatMul(x, w, n, inDim, outDim, y);
        var yf = new float[n * outDim];
        Ops<float>.MatMul(F(x), F(w), n, inDim, outDim, yf);
        AssertClose(y, yf, inDim);

        // The backward accumulates: start both from the same nonzero gradients.
        double[] dx = [.. Enumerable.Range(0, n * inDim).Select(i => 0.01 * i)],
            dw = [.. Enumerable.Range(0, outDim * inDim).Select(i => -0.01 * i)];
        float[] dxf = F(dx), dwf = F(dw);
        Ops<double>.MatMulBackward(dy, x, w, n, inDim, outDim, dx, dw);
        Ops<float>.MatMulBackward(F(dy), F(x), F(w), n, inDim, outDim, dxf, dwf);
        AssertClose(dx, dxf, outDim);
        AssertClose(dw, dwf, n);
    }

    private static void AssertClose(double[] expected, float[] actual, int terms)
    {
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(expected[i] - actual[i]) <= 1e-6 * terms + 1e-5 * Math.Abs(expected[i]),
                $"[{i}]: {actual[i]} vs {expected[i]}");
    }
}
