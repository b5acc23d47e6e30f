using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Trainer;

/// <summary>
/// ParetoQ's QuantizeLinear on a [rows, cols] weight with one learnable α per row (REFERENCE.md §1). The forward is the
/// runtime's own <see cref="Quantizer.FakeQuantize"/>, so a trained model's logits equal the exported model's; the
/// backward is the straight-through estimator for W and the LSQ/SEQ gradient for α.
/// </summary>
public static class FakeQuantizer
{
    public static void Forward(WeightFormat format, ReadOnlySpan<float> w, ReadOnlySpan<float> alpha, Span<float> wq, int rows, int cols)
    {
        Check(format);
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < cols; c++)
                wq[r * cols + c] = Quantizer.FakeQuantize(format, w[r * cols + c], alpha[r]);
    }

    /// <summary>
    /// Given dwq = ∂L/∂Wq: dw += dwq where t = W/α is inside the grid's range (LSQ: Qn ≤ t ≤ Qp; SEQ: |t| ≤ 0.99), and
    /// dα[r] += gs·Σ_c dwq·κ(t), with κ = Qn or Qp beyond the ends and round(t) − t inside (LSQ), sign(W) (binary), or
    /// Q(t) − t inside and ±0.75 (2-bit) / ±1 (ternary) when clipped (SEQ); gs = 1/√(numel·Qp) for LSQ, 1/√numel for SEQ.
    /// An α clamped up to 1e-5 gets no gradient.
    /// </summary>
    public static void Backward(WeightFormat format, ReadOnlySpan<float> w, ReadOnlySpan<float> alpha, ReadOnlySpan<float> dwq,
        Span<float> dw, Span<float> dalpha, int rows, int cols)
    {
        Check(format);
        bool seq = format is WeightFormat.Ternary or WeightFormat.Q2Seq;
        var (qn, qp) = format switch
        {
            WeightFormat.Binary => (-1f, 1f),
            WeightFormat.Q3Row => (-4f, 3f),
            WeightFormat.Q4Row => (-8f, 7f),
            _ => (-Quantizer.SeqClip, Quantizer.SeqClip),
        };
        float clipped = format == WeightFormat.Q2Seq ? 0.75f : 1f; // SEQ's α coefficient beyond the clip
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

    private static void Check(WeightFormat format)
    {
        if (!WeightFormats.IsParetoQ(format)) throw new ArgumentException($"{WeightFormats.Name(format)} is not a ParetoQ grid (binary, ternary, q2_seq, q3_row, q4_row)");
    }
}
