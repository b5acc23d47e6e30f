using System.Runtime.Intrinsics;

namespace ParetoQ.Runtime.Kernels;

/// <summary>
/// Element-wise activations of the fast path, with vector exp. <see cref="ScalarKernels"/> holds the references, which
/// exact mode uses; these agree with them to a few ulp.
/// </summary>
public static class ActivationKernels
{
    /// <summary>gate[i] = silu(gate[i]) · up[i], silu(g) = g / (1 + e^−g).</summary>
    public static void SwiGlu(ReadOnlySpan<float> up, Span<float> gate)
    {
        if (up.Length < gate.Length) throw new ArgumentException("up is shorter than gate", nameof(up));
        int i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            for (; i + 8 <= gate.Length; i += 8)
            {
                var g = Vector256.Create(gate.Slice(i, 8));
                (g / (Vector256<float>.One + Vector256.Exp(-g)) * Vector256.Create(up.Slice(i, 8))).CopyTo(gate.Slice(i,
                    8));
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            for (; i + 4 <= gate.Length; i += 4)
            {
                var g = Vector128.Create(gate.Slice(i, 4));
                (g / (Vector128<float>.One + Vector128.Exp(-g)) * Vector128.Create(up.Slice(i, 4))).CopyTo(gate.Slice(i,
                    4));
            }
        }
        ScalarKernels.SwiGlu(up[i..gate.Length], gate[i..]);
    }
}
