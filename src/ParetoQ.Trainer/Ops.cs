using System.Numerics;
using ParetoQ.Runtime.Model;

namespace ParetoQ.Trainer;

/// <summary>
/// Forward and backward passes of the decoder's operations over flat row-major arrays, in the manner of llm.c. Generic
/// in the element type: training runs them in float, and the gradient checks in double against central differences.
/// Float matmuls run on <see cref="Gemm"/>; the loops here are the reference (and run in double in the tests).
/// Every backward <b>accumulates</b> into its input gradients (+=), so a value used twice (the tied embedding and head,
/// shared layers) simply receives both contributions; callers zero gradients once per step.
/// </summary>
public static class Ops<T> where T : unmanaged, IFloatingPointIeee754<T>
{
    /// <summary>y[n, o] = Σ_i x[n, i]·w[o, i]: a linear layer, weights [out, in] as in PyTorch.</summary>
    public static void MatMul(ReadOnlySpan<T> x, ReadOnlySpan<T> w, int n, int inDim, int outDim, Span<T> y)
    {
        if (typeof(T) == typeof(float))
        {
            // y = x·wᵀ, with w read as it lies ([out, in]).
            Gemm.Shared.MultiplyTransposedB(Gemm.AsFloats(x), Gemm.AsFloats(w), Gemm.AsFloats(y), n, outDim, inDim,
                accumulate: false);
            return;
        }
        for (int t = 0; t < n; t++)
        {
            var xt = x.Slice(t * inDim, inDim);
            for (int o = 0; o < outDim; o++) y[t * outDim + o] = Dot(xt, w.Slice(o * inDim, inDim));
        }
    }

    /// <summary>dx += dy·w, dw += dyᵀ·x.</summary>
    public static void MatMulBackward(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<T> w, int n, int inDim,
        int outDim, Span<T> dx, Span<T> dw)
    {
        if (typeof(T) == typeof(float))
        {
            // dx [n, in] += dy [n, out]·w [out, in]; dw [out, in] += dyᵀ [out, n]·x [n, in].
            Gemm.Shared.Multiply(Gemm.AsFloats(dy), Gemm.AsFloats(w), Gemm.AsFloats(dx), n, inDim, outDim,
                accumulate: true);
            Gemm.Shared.MultiplyTransposedA(Gemm.AsFloats(dy), Gemm.AsFloats(x), Gemm.AsFloats(dw), outDim, inDim, n,
                accumulate: true);
            return;
        }
        for (int t = 0; t < n; t++)
        {
            var xt = x.Slice(t * inDim, inDim);
            var dxt = dx.Slice(t * inDim, inDim);
            for (int o = 0; o < outDim; o++)
            {
                T g = dy[t * outDim + o];
                if (g == T.Zero) continue;
                AddScaled(dxt, g, w.Slice(o * inDim, inDim));
                AddScaled(dw.Slice(o * inDim, inDim), g, xt);
            }
        }
    }

    /// <summary>y = x / rms(x) · weight per row; keeps 1/rms per row for the backward.</summary>
    public static void RmsNorm(ReadOnlySpan<T> x, ReadOnlySpan<T> weight, int n, int dim, T eps, Span<T> y,
        Span<T> rstd)
    {
        for (int t = 0; t < n; t++)
        {
            var xt = x.Slice(t * dim, dim);
            T r = T.One / T.Sqrt(Dot(xt, xt) / T.CreateChecked(dim) + eps);
            rstd[t] = r;
            for (int i = 0; i < dim; i++) y[t * dim + i] = xt[i] * r * weight[i];
        }
    }

    /// <summary>With u = x·r: dweight += dy·u; dx += r·(dy·w − u·mean(dy·w·u)).</summary>
    public static void RmsNormBackward(ReadOnlySpan<T> dy, ReadOnlySpan<T> x, ReadOnlySpan<T> weight,
        ReadOnlySpan<T> rstd, int n, int dim, Span<T> dx, Span<T> dweight)
    {
        for (int t = 0; t < n; t++)
        {
            var rows = new Range(t * dim, (t + 1) * dim);
            if (typeof(T) == typeof(float))
            {
                RmsNormBackwardRow(Gemm.AsFloats(dy[rows]), Gemm.AsFloats(x[rows]), Gemm.AsFloats(weight),
                    float.CreateTruncating(rstd[t]), Gemm.AsFloats(dx[rows]), Gemm.AsFloats(dweight));
                continue;
            }
            T r = rstd[t];
            T dot = T.Zero;
            for (int i = 0; i < dim; i++) dot += dy[t * dim + i] * weight[i] * x[t * dim + i] * r;
            T mean = dot / T.CreateChecked(dim);
            for (int i = 0; i < dim; i++)
            {
                T u = x[t * dim + i] * r;
                T g = dy[t * dim + i];
                dweight[i] += g * u;
                dx[t * dim + i] += r * (g * weight[i] - u * mean);
            }
        }
    }

    // One row of the float RMSNorm backward in Vector<float>, the generic loop's arithmetic.
    private static void RmsNormBackwardRow(ReadOnlySpan<float> dy, ReadOnlySpan<float> x, ReadOnlySpan<float> weight,
        float r, Span<float> dx, Span<float> dweight)
    {
        int dim = dy.Length, width = Vector<float>.Count, vectorEnd = dim - dim % width;
        var dots = Vector<float>.Zero;
        for (int i = 0; i < vectorEnd; i += width)
            dots += new Vector<float>(dy[i..]) * new Vector<float>(weight[i..]) * new Vector<float>(x[i..]);
        float dot = Vector.Sum(dots);
        for (int i = vectorEnd; i < dim; i++) dot += dy[i] * weight[i] * x[i];
        float mean = dot * r / dim;
        for (int i = 0; i < vectorEnd; i += width)
        {
            var u = new Vector<float>(x[i..]) * r;
            var g = new Vector<float>(dy[i..]);
            (new Vector<float>(dweight[i..]) + g * u).CopyTo(dweight[i..]);
            (new Vector<float>(dx[i..]) + r * (g * new Vector<float>(weight[i..]) - u * mean)).CopyTo(dx[i..]);
        }
        for (int i = vectorEnd; i < dim; i++)
        {
            float u = x[i] * r, g = dy[i];
            dweight[i] += g * u;
            dx[i] += r * (g * weight[i] - u * mean);
        }
    }

    /// <summary>values ·= factor.</summary>
    public static void Scale(Span<T> values, T factor)
    {
        int i = 0;
        for (int width = Vector<T>.Count; i <= values.Length - width; i += width)
            (new Vector<T>(values[i..]) * factor).CopyTo(values[i..]);
        for (; i < values.Length; i++) values[i] *= factor;
    }

    /// <summary>h = silu(gate)·up, elementwise.</summary>
    public static void SwiGlu(ReadOnlySpan<T> gate, ReadOnlySpan<T> up, Span<T> h)
    {
        int i = 0;
        if (typeof(T) == typeof(float))
        {
            ReadOnlySpan<float> g = Gemm.AsFloats(gate), u = Gemm.AsFloats(up);
            Span<float> y = Gemm.AsFloats(h);
            for (int width = Vector<float>.Count; i <= y.Length - width; i += width)
            {
                var gv = new Vector<float>(g[i..]);
                (gv * Sigmoid(gv) * new Vector<float>(u[i..])).CopyTo(y[i..]);
            }
        }
        for (; i < h.Length; i++) h[i] = gate[i] * Sigmoid(gate[i]) * up[i];
    }

    /// <summary>dgate += dh·up·silu'(gate), dup += dh·silu(gate), with silu'(g) = σ(g)·(1 + g·(1 − σ(g))).</summary>
    public static void SwiGluBackward(ReadOnlySpan<T> dh, ReadOnlySpan<T> gate, ReadOnlySpan<T> up, Span<T> dgate,
        Span<T> dup)
    {
        int i = 0;
        if (typeof(T) == typeof(float))
        {
            ReadOnlySpan<float> d = Gemm.AsFloats(dh), g = Gemm.AsFloats(gate), u = Gemm.AsFloats(up);
            Span<float> dg = Gemm.AsFloats(dgate), du = Gemm.AsFloats(dup);
            var one = Vector<float>.One;
            for (int width = Vector<float>.Count; i <= d.Length - width; i += width)
            {
                Vector<float> dv = new(d[i..]), gv = new(g[i..]), uv = new(u[i..]), sv = Sigmoid(gv);
                (new Vector<float>(dg[i..]) + dv * uv * sv * (one + gv * (one - sv))).CopyTo(dg[i..]);
                (new Vector<float>(du[i..]) + dv * gv * sv).CopyTo(du[i..]);
            }
        }
        for (; i < dh.Length; i++)
        {
            T s = Sigmoid(gate[i]);
            dgate[i] += dh[i] * up[i] * s * (T.One + gate[i] * (T.One - s));
            dup[i] += dh[i] * gate[i] * s;
        }
    }

    /// <summary>
    /// Rotates each head of x [sequences, n, heads, headDim] in place by position (start + t), t counted from each
    /// sequence's first token, with frequencies invFreq [headDim/2]; pair p is (p, p + hd/2) for rotate-half and (2p,
    /// 2p + 1) interleaved. <paramref name="inverse"/> rotates by the negative angle, which is the backward (a
    /// rotation's transpose). Each angle's cos and sin serve every sequence and head.
    /// </summary>
    public static void Rope(ReadOnlySpan<double> invFreq, int n, int sequences, int heads, int headDim, int start,
        bool interleaved, bool inverse, Span<T> x)
    {
        int half = headDim / 2;
        for (int t = 0; t < n; t++)
            for (int p = 0; p < half; p++)
            {
                double angle = (start + t) * invFreq[p];
                T cos = T.CreateChecked(Math.Cos(angle)),
                    sin = T.CreateChecked(inverse ? -Math.Sin(angle) : Math.Sin(angle));
                for (int s = 0; s < sequences; s++)
                    for (int h = 0; h < heads; h++)
                    {
                        int b = ((s * n + t) * heads + h) * headDim;
                        int i = interleaved ? b + 2 * p : b + p, j = interleaved ? i + 1 : i + half;
                        T a = x[i], c = x[j];
                        x[i] = a * cos - c * sin;
                        x[j] = a * sin + c * cos;
                    }
            }
    }

    /// <summary>
    /// Causal attention with grouped KV heads within each of <paramref name="sequences"/> sequences of n tokens: q
    /// [sequences, n, H, hd], k and v [sequences, n, Hkv, hd], out like q; query t sees keys max(0, t − window + 1) … t
    /// of its own sequence (window 0 = all). probs [sequences, H, n, n] keeps the softmax for the backward.
    /// </summary>
    public static void Attention(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, int n, int sequences,
        int heads, int kvHeads, int headDim, int window, Span<T> output, Span<T> probs)
    {
        if (typeof(T) == typeof(float))
        {
            // (sequence, head) pairs are independent: one job item each on the GEMM's pool.
            ParallelAttention.Forward(Gemm.AsFloats(q), Gemm.AsFloats(k), Gemm.AsFloats(v), n, sequences, heads,
                kvHeads, headDim, window, Gemm.AsFloats(output), Gemm.AsFloats(probs));
            return;
        }
        var shape = new SequenceShape(n, heads, kvHeads, headDim);
        for (int s = 0; s < sequences; s++)
            for (int h = 0; h < heads; h++)
                AttentionHead(shape.Q(q, s), shape.Kv(k, s), shape.Kv(v, s), n, heads, kvHeads, headDim, window, h,
                    shape.Q(output, s), shape.Probs(probs, s));
    }

    /// <summary>One query head of <see cref="Attention"/>: it writes only that head's outputs and probs.</summary>
    internal static void AttentionHead(ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v, int n, int heads,
        int kvHeads, int headDim, int window, int h, Span<T> output, Span<T> probs)
    {
        T scale = T.One / T.Sqrt(T.CreateChecked(headDim));
        int kh = h / (heads / kvHeads);
        for (int t = 0; t < n; t++)
        {
            int first = AttentionWindow.FirstVisible(t, window);
            var row = probs.Slice((h * n + t) * n, n);
            row.Clear();
            var qt = q.Slice((t * heads + h) * headDim, headDim);
            T max = T.NegativeInfinity;
            for (int s = first; s <= t; s++)
            {
                row[s] = Dot(qt, k.Slice((s * kvHeads + kh) * headDim, headDim)) * scale;
                max = T.Max(max, row[s]);
            }
            T sum = T.Zero;
            for (int s = first; s <= t; s++) sum += row[s] = T.Exp(row[s] - max);
            var ot = output.Slice((t * heads + h) * headDim, headDim);
            ot.Clear();
            for (int s = first; s <= t; s++) AddScaled(ot, row[s] /= sum,
                v.Slice((s * kvHeads + kh) * headDim, headDim));
        }
    }

    /// <summary>dq, dk, dv += the gradients of <see cref="Attention"/> given dout and its saved probs.</summary>
    public static void AttentionBackward(ReadOnlySpan<T> dout, ReadOnlySpan<T> q, ReadOnlySpan<T> k, ReadOnlySpan<T> v,
        ReadOnlySpan<T> probs, int n, int sequences, int heads, int kvHeads, int headDim, int window, Span<T> dq,
        Span<T> dk, Span<T> dv)
    {
        if (typeof(T) == typeof(float))
        {
            // A KV head's gradient gathers its whole group of query heads: one job item per (sequence, KV head).
            ParallelAttention.Backward(Gemm.AsFloats(dout), Gemm.AsFloats(q), Gemm.AsFloats(k), Gemm.AsFloats(v),
                Gemm.AsFloats(probs), n, sequences, heads, kvHeads, headDim, window, Gemm.AsFloats(dq),
                Gemm.AsFloats(dk), Gemm.AsFloats(dv));
            return;
        }
        var shape = new SequenceShape(n, heads, kvHeads, headDim);
        for (int s = 0; s < sequences; s++)
            for (int kh = 0; kh < kvHeads; kh++)
                AttentionBackwardKvHead(shape.Q(dout, s), shape.Q(q, s), shape.Kv(k, s), shape.Kv(v, s),
                    shape.Probs(probs, s), n, heads, kvHeads, headDim, window, kh, shape.Q(dq, s), shape.Kv(dk, s),
                    shape.Kv(dv, s));
    }

    /// <summary>Where sequence s of a batch lies in the attention's buffers.</summary>
    internal readonly record struct SequenceShape(int N, int Heads, int KvHeads, int HeadDim)
    {
        public Span<T> Q(Span<T> x, int s) => x.Slice(s * N * Heads * HeadDim, N * Heads * HeadDim);
        public ReadOnlySpan<T> Q(ReadOnlySpan<T> x, int s) => x.Slice(s * N * Heads * HeadDim, N * Heads * HeadDim);
        public Span<T> Kv(Span<T> x, int s) => x.Slice(s * N * KvHeads * HeadDim, N * KvHeads * HeadDim);
        public ReadOnlySpan<T> Kv(ReadOnlySpan<T> x, int s)
            => x.Slice(s * N * KvHeads * HeadDim, N * KvHeads * HeadDim);
        public Span<T> Probs(Span<T> x, int s) => x.Slice(s * Heads * N * N, Heads * N * N);
        public ReadOnlySpan<T> Probs(ReadOnlySpan<T> x, int s) => x.Slice(s * Heads * N * N, Heads * N * N);
    }

    /// <summary>The query heads of KV head <paramref name="kh"/> in <see cref="AttentionBackward"/>: it writes only
    /// their dq rows and that KV head's dk and dv.</summary>
    internal static void AttentionBackwardKvHead(ReadOnlySpan<T> dout, ReadOnlySpan<T> q, ReadOnlySpan<T> k,
        ReadOnlySpan<T> v, ReadOnlySpan<T> probs, int n, int heads, int kvHeads, int headDim, int window, int kh,
        Span<T> dq, Span<T> dk, Span<T> dv)
    {
        T scale = T.One / T.Sqrt(T.CreateChecked(headDim));
        int group = heads / kvHeads;
        for (int h = kh * group; h < (kh + 1) * group; h++)
        {
            for (int t = 0; t < n; t++)
            {
                int first = AttentionWindow.FirstVisible(t, window);
                var row = probs.Slice((h * n + t) * n, n);
                var dot = dout.Slice((t * heads + h) * headDim, headDim);
                // dp[s] = dout·v[s]; dscore[s] = p[s]·(dp[s] − Σ p·dp)
                T weighted = T.Zero;
                for (int s = first; s <= t; s++) weighted += row[s] * Dot(dot,
                    v.Slice((s * kvHeads + kh) * headDim, headDim));
                var qt = q.Slice((t * heads + h) * headDim, headDim);
                var dqt = dq.Slice((t * heads + h) * headDim, headDim);
                for (int s = first; s <= t; s++)
                {
                    var vs = v.Slice((s * kvHeads + kh) * headDim, headDim);
                    var ks = k.Slice((s * kvHeads + kh) * headDim, headDim);
                    var dvs = dv.Slice((s * kvHeads + kh) * headDim, headDim);
                    var dks = dk.Slice((s * kvHeads + kh) * headDim, headDim);
                    T p = row[s];
                    T dscore = p * (Dot(dot, vs) - weighted) * scale;
                    AddScaled(dvs, p, dot);
                    AddScaled(dqt, dscore, ks);
                    AddScaled(dks, dscore, qt);
                }
            }
        }
    }

    /// <summary>x[t] = table[tokens[t]] (rows of dim).</summary>
    public static void Embed(ReadOnlySpan<int> tokens, ReadOnlySpan<T> table, int dim, Span<T> x)
    {
        for (int t = 0; t < tokens.Length; t++) table.Slice(tokens[t] * dim, dim).CopyTo(x.Slice(t * dim, dim));
    }

    /// <summary>dtable[tokens[t]] += dx[t].</summary>
    public static void EmbedBackward(ReadOnlySpan<int> tokens, ReadOnlySpan<T> dx, int dim, Span<T> dtable)
    {
        for (int t = 0; t < tokens.Length; t++)
        {
            var row = dtable.Slice(tokens[t] * dim, dim);
            var g = dx.Slice(t * dim, dim);
            for (int i = 0; i < dim; i++) row[i] += g[i];
        }
    }

    /// <summary>
    /// Mean next-token cross-entropy over the positions whose target is ≥ 0 (−1 masks a position), and its gradient
    /// into dlogits (overwritten): (softmax − onehot)·<paramref name="gradScale"/>/count.
    /// </summary>
    public static T CrossEntropy(ReadOnlySpan<T> logits, ReadOnlySpan<int> targets, int vocab, T gradScale,
        Span<T> dlogits)
    {
        // Scored rows are overwritten below; only masked rows need zeros.
        int count = 0;
        for (int t = 0; t < targets.Length; t++)
            if (targets[t] >= 0) count++;
            else dlogits.Slice(t * vocab, vocab).Clear();
        T loss = T.Zero;
        if (count == 0) return loss;
        T weight = gradScale / T.CreateChecked(count);
        if (typeof(T) == typeof(float))
        {
            // Rows are independent: spread over the GEMM's pool, in vectors.
            return T.CreateTruncating(ParallelCrossEntropy.Run(Gemm.AsFloats(logits), targets, vocab,
                float.CreateTruncating(weight), Gemm.AsFloats(dlogits)) / count);
        }
        for (int t = 0; t < targets.Length; t++)
        {
            if (targets[t] < 0) continue;
            var row = logits.Slice(t * vocab, vocab);
            var grad = dlogits.Slice(t * vocab, vocab);
            T max = T.NegativeInfinity;
            foreach (T l in row) max = T.Max(max, l);
            T sum = T.Zero;
            for (int i = 0; i < vocab; i++) sum += grad[i] = T.Exp(row[i] - max);
            loss += T.Log(sum) - (row[targets[t]] - max);
            for (int i = 0; i < vocab; i++) grad[i] = grad[i] / sum * weight;
            grad[targets[t]] -= weight;
        }
        return loss / T.CreateChecked(count);
    }

    /// <summary>
    /// Knowledge distillation: the mean over scored positions (target ≥ 0) of KL(teacher ‖ student) between the
    /// softmaxes of <paramref name="teacher"/> and <paramref name="student"/> logits. Its gradient, (softmax(student) −
    /// softmax(teacher))·<paramref name="gradScale"/>/count, is <b>added</b> to dlogits, so it mixes with
    /// <see cref="CrossEntropy"/>'s.
    /// </summary>
    public static T Distillation(ReadOnlySpan<T> student, ReadOnlySpan<T> teacher, ReadOnlySpan<int> targets, int vocab,
        T gradScale, Span<T> dlogits)
    {
        int count = 0;
        foreach (int target in targets) if (target >= 0) count++;
        if (count == 0) return T.Zero;
        T loss = T.Zero, weight = gradScale / T.CreateChecked(count);
        for (int t = 0; t < targets.Length; t++)
        {
            if (targets[t] < 0) continue;
            var s = student.Slice(t * vocab, vocab);
            var q = teacher.Slice(t * vocab, vocab);
            T sMax = T.NegativeInfinity, qMax = T.NegativeInfinity;
            for (int i = 0; i < vocab; i++) { sMax = T.Max(sMax, s[i]); qMax = T.Max(qMax, q[i]); }
            T sSum = T.Zero, qSum = T.Zero;
            for (int i = 0; i < vocab; i++) { sSum += T.Exp(s[i] - sMax); qSum += T.Exp(q[i] - qMax); }
            T sLog = T.Log(sSum), qLog = T.Log(qSum);
            var grad = dlogits.Slice(t * vocab, vocab);
            for (int i = 0; i < vocab; i++)
            {
                T logP = q[i] - qMax - qLog, logQ = s[i] - sMax - sLog, p = T.Exp(logP);
                loss += p * (logP - logQ);
                grad[i] += (T.Exp(logQ) - p) * weight;
            }
        }
        return loss / T.CreateChecked(count);
    }

    private static T Sigmoid(T x) => T.One / (T.One + T.Exp(-x));

    private static Vector<float> Sigmoid(Vector<float> x) => Vector<float>.One / (Vector<float>.One + Vector.Exp(-x));

    /// <summary>One row of the float cross-entropy in vectors (the 32000-wide head makes it the trainer's largest
    /// elementwise loop): grad = (softmax(row) − onehot)·weight; returns the row's loss.</summary>
    internal static float CrossEntropyRow(ReadOnlySpan<float> row, int target, float weight, Span<float> grad)
    {
        var (max, sum) = ExpShifted(row, grad);
        Scale(grad, weight / sum);
        grad[target] -= weight;
        return MathF.Log(sum) - (row[target] - max);
    }

    /// <summary>e[i] = exp(x[i] − max x); returns (max, Σ e).</summary>
    private static (float Max, float Sum) ExpShifted(ReadOnlySpan<float> x, Span<float> e)
    {
        int width = Vector<float>.Count, i = 0, end = x.Length - x.Length % width;
        var maxV = new Vector<float>(float.NegativeInfinity);
        for (; i < end; i += width) maxV = Vector.Max(maxV, new Vector<float>(x[i..]));
        float max = float.NegativeInfinity;
        for (int lane = 0; lane < width; lane++) max = MathF.Max(max, maxV[lane]);
        for (; i < x.Length; i++) max = MathF.Max(max, x[i]);
        var shift = new Vector<float>(max);
        var sumV = Vector<float>.Zero;
        for (i = 0; i < end; i += width)
        {
            var v = Vector.Exp(new Vector<float>(x[i..]) - shift);
            v.CopyTo(e[i..]);
            sumV += v;
        }
        float sum = Vector.Sum(sumV);
        for (; i < x.Length; i++) sum += e[i] = MathF.Exp(x[i] - max);
        return (max, sum);
    }

    private static void Scale(Span<float> y, float factor)
    {
        int width = Vector<float>.Count, i = 0;
        var f = new Vector<float>(factor);
        for (; i <= y.Length - width; i += width) (new Vector<float>(y[i..]) * f).CopyTo(y[i..]);
        for (; i < y.Length; i++) y[i] *= factor;
    }

    // The two inner loops of every matmul, over System.Numerics vectors of T (8 floats or 4 doubles with AVX2).
    private static T Dot(ReadOnlySpan<T> a, ReadOnlySpan<T> b)
    {
        var acc = Vector<T>.Zero;
        int i = 0, width = Vector<T>.Count;
        for (; i <= a.Length - width; i += width) acc += new Vector<T>(a[i..]) * new Vector<T>(b[i..]);
        T sum = Vector.Sum(acc);
        for (; i < a.Length; i++) sum += a[i] * b[i];
        return sum;
    }

    // y += g·x
    private static void AddScaled(Span<T> y, T g, ReadOnlySpan<T> x)
    {
        int i = 0, width = Vector<T>.Count;
        var gv = new Vector<T>(g);
        for (; i <= y.Length - width; i += width) (new Vector<T>(y[i..]) + gv * new Vector<T>(x[i..])).CopyTo(y[i..]);
        for (; i < y.Length; i++) y[i] += g * x[i];
    }
}
