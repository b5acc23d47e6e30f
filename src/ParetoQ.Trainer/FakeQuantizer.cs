using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Trainer;

/// <summary>
/// ParetoQ's QuantizeLinear on a [rows, cols] weight with one learnable α per row (REFERENCE.md §1). The forward is the
/// runtime's own <see cref="Quantizer.FakeQuantize"/>, so a trained model's logits equal the exported model's; the
/// backward is the straight-through estimator for W and the LSQ/SEQ gradient for α.
/// </summary>
public static class FakeQuantizer
{
    public static void Forward(WeightFormat format, ReadOnlySpan<float> w, ReadOnlySpan<float> alpha, Span<float> wq,
        int rows, int cols)
    {
        Grid(format);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                wq[r * cols + c] = Quantizer.FakeQuantize(format, w[r * cols + c], alpha[r]);
    }

    /// <summary>
    /// Given dwq = ∂L/∂Wq: dw += dwq where t = W/α is inside the grid's range (LSQ: Qn ≤ t ≤ Qp; SEQ: |t| ≤ 0.99), and
    /// dα[r] += gs·Σ_c dwq·κ(t), with κ = Qn or Qp beyond the ends and round(t) − t inside (LSQ), sign(W) (binary), or
    /// Q(t) − t inside and ±0.75 (2-bit) / ±1 (ternary) when clipped (SEQ); gs = 1/√(numel·Qp) for LSQ, 1/√numel for
    /// SEQ. An α clamped up to 1e-5 gets no gradient.
    /// </summary>
    public static void Backward(WeightFormat format, ReadOnlySpan<float> w, ReadOnlySpan<float> alpha,
        ReadOnlySpan<float> dwq, Span<float> dw, Span<float> dalpha, int rows, int cols)
    {
        var grid = Grid(format);
        bool seq = grid.Seq;
        var (qn, qp) = (grid.Qn, grid.Qp);
        float clipped = grid.ClippedGradient; // SEQ's α coefficient beyond the clip
        double gs = seq ? 1 / Math.Sqrt((double)rows * cols) : 1 / Math.Sqrt((double)rows * cols * qp);
        for (int r = 0; r < rows; r++)
        {
            float a = Quantizer.EffectiveScale(format, alpha[r]);
            double sum = 0;
            for (int c = 0; c < cols; c++)
            {
                int i = r * cols + c;
                float t = w[i] / a, g = dwq[i];
                bool inside = t >= qn && t <= qp;
                if (inside) dw[i] += g;
                float kappa = format switch
                {
                    WeightFormat.Binary => MathF.Sign(w[i]),
                    _ when seq => inside ? Quantizer.FakeQuantize(format, w[i], a) / a - t : MathF.Sign(t) * clipped,
                    _ => t < qn ? qn : t > qp ? qp : MathF.Round(t) - t,
                };
                sum += (double)g * kappa;
            }
            if (alpha[r] >= Quantizer.MinAlpha) dalpha[r] += (float)(sum * gs);
        }
    }

    /// <summary>The format's QAT grid, from its descriptor.</summary>
    private static TrainingGrid Grid(WeightFormat format) =>
        WeightFormats.Of(format).Grid
            ?? throw new ArgumentException($"{WeightFormats.Name(format)} is not a ParetoQ grid (binary, ternary, q2_seq, q3_row, q4_row)");
}
