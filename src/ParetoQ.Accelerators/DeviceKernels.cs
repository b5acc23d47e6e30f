using ILGPU;
using ILGPU.Algorithms;
using ILGPU.Algorithms.ScanReduceOperations;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Accelerators;

/// <summary>
/// How a kernel reads one weight tensor. The tensor sits on the device exactly as the .pq file stores it, as 32-bit
/// little-endian words: packed codes in <see cref="PackedLayout"/>'s tiles followed by their fp32 scales, or dense
/// floats.
/// </summary>
public struct DeviceMatrix
{
    public int Format;        // (int)WeightFormat
    public int Rows, Cols;
    public int CodeBits;      // packed: 1, 2, 3, 4 or 8
    public int ChunksPerRow;  // packed: 16-byte chunks per row
    public int GroupsPerRow;  // packed: scales per row (1, or PaddedCols / 32 for q4_g32)
    public int ScaleWord;     // packed: index of the first scale among the words (CodeBytes / 4)
    public float C1, C0;      // packed: value(code) = scale · (C1 · code + C0), the format's AffineCodes.Line
    public int A, B;          // packed: value(code) = scale · (A · code − B) / Divisor, its AffineCodes.Value
    public float Divisor;
    public int ClampScale;    // 1 for the ParetoQ grids, whose α is used as max(α, 1e-5)
}

/// <summary>Geometry of one attention call over one layer's KV cache.</summary>
public struct AttentionShape
{
    public int Heads, KvHeads, HeadDim;
    public int Capacity;      // cache slots
    public int Ring;          // 1: position p lives in slot p mod Capacity
    public int Window;        // local layers: positions (pos − Window, pos]; 0 = global
    public int StartPos;      // position of token 0 of the activation buffers
    public int FirstToken;    // the launch covers tokens FirstToken.. (ring caches go one token per launch)
    public int Int8;          // 1: int8 codes with a scale and zero point per (slot, head); 0: fp32
    public float Scale;       // 1 / sqrt(HeadDim)
    // where the values start in the code/float arrays (keys come first); scales/zeros likewise at ValueRowOffset
    public long ValueOffset;
    public int ValueRowOffset;
}

/// <summary>Position encoding of one call: which table rows to use and how.</summary>
public struct PositionShape
{
    public int Heads, KvHeads, HeadDim;
    public int StartPos;
    public int Rope;          // 1: rotate by the table's cos/sin (then QK-norm when asked)
    public int Interleaved;   // 1: pairs (2i, 2i+1); 0: rotate_half pairs (i, i + hd/2)
    public int QkNorm;
    public float QkNormEps;
    public int Temperature;   // 1 (NoPE layers with tuning): scale q by the table's per-position factor
}

/// <summary>
/// The ILGPU kernels of the forward pass. Each mirrors a CPU reference in ParetoQ.Runtime (ScalarKernels, WeightPacker,
/// KvQuantizer, CpuBackend's attention) and is tested against it. Matmul, RMSNorm and attention kernels run groups of
/// a power-of-two number of lanes, 4 to <see cref="MaxLanes"/>, and reduce through group shared memory. They use no
/// warp shuffles: ILGPU's OpenCL backend emits shuffles for Intel devices only, so a kernel with one cannot compile
/// for other OpenCL devices, and a group need not be one hardware warp.
/// </summary>
public static class DeviceKernels
{
    /// <summary>The most lanes a group may have: the size of the reductions' shared arrays.</summary>
    public const int MaxLanes = 256;

    // ---- weights --------------------------------------------------------------------------------------------------

    /// <summary>
    /// y (tokens, Rows) = x (tokens, Cols) · Wᵀ for a packed matrix, one group per (tile, token): lane l reads
    /// row l mod 4 of the tile, so the group's 16-byte loads are consecutive (the tile interleaves its 4 rows' chunks).
    /// Each lane sums code·x and x over its units; the per-format affine map and the scale are applied once per group
    /// of inputs, then the lanes of each row are added up in shared memory.
    /// </summary>
    public static void PackedMatMul(ArrayView<int> w, DeviceMatrix m, ArrayView<float> x, ArrayView<float> y)
    {
        int tile = Grid.IdxX, token = Grid.IdxY;
        int lane = Group.IdxX, lanes = Group.DimX;
        int r = lane & 3;
        bool q3 = m.CodeBits == 3;
        int units = q3 ? m.ChunksPerRow / 3 : m.ChunksPerRow;
        int xBase = token * m.Cols;
        float acc = 0, codes = 0, inputs = 0;
        for (int u = lane >> 2; u < units; u += lanes >> 2)
        {
            float c = 0, s = 0;
            if (q3) DotQ3Unit(w, m, x, xBase, tile, r, u, ref c, ref s);
            else DotUnit(w, m, x, xBase, tile, r, u, ref c, ref s);
            if (m.GroupsPerRow > 1) acc += Scale(w, m, tile, r, u) * (m.C1 * c + m.C0 * s); // a unit is one group of 32
            else { codes += c; inputs += s; }
        }
        if (m.GroupsPerRow == 1) acc = Scale(w, m, tile, r, 0) * (m.C1 * codes + m.C0 * inputs);
        acc = GroupReduce<AddFloat>(acc, lane, lanes, 4);
        int row = tile * 4 + r;
        if (lane < 4 && row < m.Rows) y[token * m.Rows + row] = acc;
    }

    // One 16-byte chunk of b-bit codes (b = 1, 2, 4, 8): byte i, bit plane p holds in-chunk weight p·16 + i.
    private static void DotUnit(ArrayView<int> w, DeviceMatrix m, ArrayView<float> x, int xBase, int tile, int r,
        int chunk, ref float codes, ref float inputs)
    {
        int b = m.CodeBits, planes = 8 / b, mask = (1 << b) - 1;
        int word0 = ChunkWord(m, tile, r, chunk);
        int colBase = chunk * (128 / b);
        for (int wi = 0; wi < 4; wi++)
        {
            int word = w[word0 + wi];
            for (int bi = 0; bi < 4; bi++)
            {
                int bits = (word >> (8 * bi)) & 0xFF, i = wi * 4 + bi;
                for (int p = 0; p < planes; p++)
                {
                    int col = colBase + p * 16 + i;
                    float xv = col < m.Cols ? x[xBase + col] : 0f; // padding codes are 0, which is not the value 0
                    codes += ((bits >> (p * b)) & mask) * xv;
                    inputs += xv;
                }
            }
        }
    }

    // A 3-bit block: chunks 3u and 3u+1 hold the low 2 bits of weights 0..63 and 64..127, chunk 3u+2 their high bits.
    private static void DotQ3Unit(ArrayView<int> w, DeviceMatrix m, ArrayView<float> x, int xBase, int tile, int r,
        int u, ref float codes, ref float inputs)
    {
        int hiWord0 = ChunkWord(m, tile, r, 3 * u + 2);
        for (int half = 0; half < 2; half++)
        {
            int loWord0 = ChunkWord(m, tile, r, 3 * u + half);
            for (int wi = 0; wi < 4; wi++)
            {
                int lo = w[loWord0 + wi], hi = w[hiWord0 + wi];
                for (int bi = 0; bi < 4; bi++)
                {
                    int loBits = (lo >> (8 * bi)) & 0xFF, hiBits = (hi >> (8 * bi)) & 0xFF, i = wi * 4 + bi;
                    for (int p = 0; p < 4; p++)
                    {
                        int col = u * 128 + half * 64 + p * 16 + i;
                        float xv = col < m.Cols ? x[xBase + col] : 0f;
                        int code = ((loBits >> (2 * p)) & 3) | (((hiBits >> (half * 4 + p)) & 1) << 2);
                        codes += code * xv;
                        inputs += xv;
                    }
                }
            }
        }
    }

    /// <summary>y (tokens, Rows) = x · Wᵀ for a dense float matrix: group (row, token) strides over the
    /// columns.</summary>
    public static void FloatMatMul(ArrayView<int> w, DeviceMatrix m, ArrayView<float> x, ArrayView<float> y)
    {
        int row = Grid.IdxX, token = Grid.IdxY;
        int lane = Group.IdxX, lanes = Group.DimX;
        float acc = 0;
        long rowBase = (long)row * m.Cols;
        for (int k = lane; k < m.Cols; k += lanes) acc += FloatAt(w, m.Format, rowBase + k) * x[token * m.Cols + k];
        acc = GroupReduce<AddFloat>(acc, lane, lanes, 1);
        if (lane == 0) y[token * m.Rows + row] = acc;
    }

    /// <summary>x (tokens, Cols) = rows tokens[t] of the table, dequantized with the arithmetic of
    /// Quantizer.Dequantize.</summary>
    public static void Embed(Index2D index, ArrayView<int> w, DeviceMatrix m, ArrayView<int> tokens, ArrayView<float> x)
    {
        int col = index.X, t = index.Y, row = tokens[t];
        x[t * m.Cols + col] = WeightAt(w, m, row, col);
    }

    /// <summary>The value of weight (row, col) of any format.</summary>
    public static float WeightAt(ArrayView<int> w, DeviceMatrix m, int row, int col)
    {
        if (m.CodeBits == 0) return FloatAt(w, m.Format, (long)row * m.Cols + col);
        int tile = row >> 2, r = row & 3, code;
        if (m.CodeBits == 3)
        {
            int u = col >> 7, k = col & 127, half = k >> 6, j = k & 63;
            int low = (ByteOf(w, ChunkWord(m, tile, r, 3 * u + half), j & 15) >> (2 * (j >> 4))) & 3;
            int high = (ByteOf(w, ChunkWord(m, tile, r, 3 * u + 2), k & 15) >> (k >> 4)) & 1;
            code = low | high << 2;
        }
        else
        {
            int b = m.CodeBits, perChunk = 128 / b, j = col % perChunk;
            code = (ByteOf(w, ChunkWord(m, tile, r, col / perChunk), j & 15) >> (b * (j >> 4))) & ((1 << b) - 1);
        }
        float a = Scale(w, m, tile, r, m.GroupsPerRow > 1 ? col / 32 : 0);
        return a * ((m.A * code - m.B) / m.Divisor); // AffineCodes.Value, the CPU's exact arithmetic
    }

    private static int ChunkWord(DeviceMatrix m, int tile, int r, int chunk)
        => ((tile * m.ChunksPerRow + chunk) * 4 + r) * 4;

    private static int ByteOf(ArrayView<int> w, int word0, int i) => (w[word0 + (i >> 2)] >> (8 * (i & 3))) & 0xFF;

    private static float Scale(ArrayView<int> w, DeviceMatrix m, int tile, int r, int group)
    {
        float a = Interop.IntAsFloat((uint)w[m.ScaleWord + (tile * m.GroupsPerRow + group) * 4 + r]);
        return m.ClampScale != 0 ? XMath.Max(a, Quantizer.MinAlpha) : a;
    }

    /// <summary>Element <paramref name="index"/> of a dense f32, f16 or bf16 tensor.</summary>
    public static float FloatAt(ArrayView<int> w, int format, long index)
    {
        if (format == (int)WeightFormat.F32) return Interop.IntAsFloat((uint)w[index]);
        int bits = (w[index >> 1] >> (int)(16 * (index & 1))) & 0xFFFF;
        if (format == (int)WeightFormat.BF16) return Interop.IntAsFloat((uint)bits << 16);
        return HalfToSingle(bits);
    }

    private static float HalfToSingle(int h)
    {
        uint sign = (uint)(h & 0x8000) << 16;
        int exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
        if (exponent == 0) // zero or subnormal: mantissa · 2⁻²⁴
        {
            float v = mantissa * 5.9604644775390625e-8f;
            return sign != 0 ? -v : v;
        }
        if (exponent == 31) return Interop.IntAsFloat(sign | 0x7F800000u | (uint)mantissa << 13);
        return Interop.IntAsFloat(sign | (uint)(exponent + 112) << 23 | (uint)mantissa << 13);
    }

    // ---- norms and elementwise ------------------------------------------------------------------------------------

    /// <summary>y row t = RMSNorm of x row first + t, times the f32 weight, by group t.</summary>
    public static void RmsNorm(ArrayView<float> x, int first, int dim, ArrayView<int> weight, float eps,
        ArrayView<float> y)
    {
        int t = Grid.IdxX, lane = Group.IdxX, lanes = Group.DimX;
        int src = (first + t) * dim;
        float ss = 0;
        for (int i = lane; i < dim; i += lanes) ss += x[src + i] * x[src + i];
        ss = GroupReduce<AddFloat>(ss, lane, lanes, 1);
        float inv = 1f / XMath.Sqrt(ss / dim + eps);
        for (int i = lane; i < dim; i += lanes) y[t * dim + i] = x[src + i] * inv * Interop.IntAsFloat((uint)weight[i]);
    }

    /// <summary>gate = silu(gate) · up.</summary>
    public static void SwiGlu(Index1D i, ArrayView<float> gate, ArrayView<float> up)
    {
        float g = gate[i];
        gate[i] = g / (1f + XMath.Exp(-g)) * up[i];
    }

    /// <summary>x += y.</summary>
    public static void Add(Index1D i, ArrayView<float> x, ArrayView<float> y) => x[i] += y[i];

    // ---- attention ------------------------------------------------------------------------------------------------

    /// <summary>
    /// One head vector of q or k per thread (index.X over heads then KV heads, index.Y over tokens): RoPE from the
    /// table (cos then sin, hd/2 each, per position), then QK-norm; or, on NoPE layers, q times the per-position
    /// temperature in table[pos].
    /// </summary>
    public static void PositionEncode(Index2D index, ArrayView<float> q, ArrayView<float> k, ArrayView<float> table,
        PositionShape s)
    {
        int slot = index.X, t = index.Y, hd = s.HeadDim, half = hd / 2, pos = s.StartPos + t;
        bool isQ = slot < s.Heads;
        var v = isQ ? q.SubView((long)(t * s.Heads + slot) * hd, hd)
            : k.SubView((long)(t * s.KvHeads + slot - s.Heads) * hd, hd);
        if (s.Rope == 0)
        {
            if (s.Temperature != 0 && isQ)
            {
                float factor = table[pos];
                for (int i = 0; i < hd; i++) v[i] *= factor;
            }
            return;
        }
        long row = (long)pos * hd;
        for (int i = 0; i < half; i++)
        {
            int a = s.Interleaved != 0 ? 2 * i : i, b = s.Interleaved != 0 ? 2 * i + 1 : i + half;
            float cos = table[row + i], sin = table[row + half + i], x0 = v[a], x1 = v[b];
            v[a] = x0 * cos - x1 * sin;
            v[b] = x1 * cos + x0 * sin;
        }
        if (s.QkNorm == 0) return;
        float ss = 0;
        for (int i = 0; i < hd; i++) ss += v[i] * v[i];
        float inv = 1f / XMath.Sqrt(ss / hd + s.QkNormEps);
        for (int i = 0; i < hd; i++) v[i] *= inv;
    }

    /// <summary>
    /// Stores k, v of tokens FirstToken + index.Y in the cache, one (token, KV head) per thread: int8 with
    /// KvQuantizer's asymmetric scheme (range including 0, round half to even), or fp32.
    /// </summary>
    public static void KvWrite(Index2D index, ArrayView<float> k, ArrayView<float> v, ArrayView<sbyte> codes,
        ArrayView<float> scales, ArrayView<sbyte> zeros, ArrayView<float> full, AttentionShape a)
    {
        int g = index.X, t = a.FirstToken + index.Y, hd = a.HeadDim;
        int pos = a.StartPos + t, slot = a.Ring != 0 ? pos % a.Capacity : pos;
        int row = slot * a.KvHeads + g;
        long src = (long)(t * a.KvHeads + g) * hd, dst = (long)row * hd;
        if (a.Int8 == 0)
        {
            for (int i = 0; i < hd; i++)
            {
                full[dst + i] = k[src + i];
                full[a.ValueOffset + dst + i] = v[src + i];
            }
            return;
        }
        QuantizeVector(k.SubView(src, hd), codes.SubView(dst, hd), scales, zeros, row);
        QuantizeVector(v.SubView(src, hd), codes.SubView(a.ValueOffset + dst, hd), scales, zeros,
            a.ValueRowOffset + row);
    }

    private static void QuantizeVector(ArrayView<float> x, ArrayView<sbyte> q, ArrayView<float> scales,
        ArrayView<sbyte> zeros, int row)
    {
        float min = 0, max = 0;
        for (int i = 0; i < x.IntLength; i++)
        {
            min = XMath.Min(min, x[i]);
            max = XMath.Max(max, x[i]);
        }
        float scale = (max - min) / 255f;
        if (!(scale > 0 && scale < float.PositiveInfinity)) // all zero (scale 1, codes 0), or NaN/∞ inside (scale NaN)
        {
            for (int i = 0; i < x.IntLength; i++) q[i] = 0;
            scales[row] = scale == 0 ? 1f : float.NaN;
            zeros[row] = 0;
            return;
        }
        int zero = XMath.Clamp(-128 - (int)XMath.Round(min / scale), -128, 127);
        for (int i = 0; i < x.IntLength; i++) q[i] = (sbyte)XMath.Clamp((int)XMath.Round(x[i] / scale) + zero, -128,
            127);
        scales[row] = scale;
        zeros[row] = (sbyte)zero;
    }

    /// <summary>
    /// Attention of query head index.X of token FirstToken + index.Y over the cache, one group each: lanes score
    /// the cached positions into scratch, the max and the sum are group reductions, then each lane accumulates its
    /// dimensions over the weighted values. The token's own K/V come from the fp32 buffers, as on the CPU.
    /// </summary>
    public static void Attention(ArrayView<float> q, ArrayView<float> k, ArrayView<float> v, ArrayView<float> output,
        ArrayView<sbyte> codes, ArrayView<float> scales, ArrayView<sbyte> zeros, ArrayView<float> full,
            ArrayView<float> scratch, AttentionShape a)
    {
        int h = Grid.IdxX, t = a.FirstToken + Grid.IdxY;
        int lane = Group.IdxX, lanes = Group.DimX, hd = a.HeadDim;
        int g = h / (a.Heads / a.KvHeads), pos = a.StartPos + t;
        int first = AttentionWindow.FirstVisible(pos, a.Window), count = pos - first;
        long qh = (long)(t * a.Heads + h) * hd, own = (long)(t * a.KvHeads + g) * hd;
        long scores = ((long)Grid.IdxY * a.Heads + h) * a.Capacity;

        float qSum = 0, ownScore = 0;
        for (int i = 0; i < hd; i++)
        {
            qSum += q[qh + i];
            ownScore += q[qh + i] * k[own + i];
        }
        ownScore *= a.Scale;
        float max = ownScore;
        for (int j = lane; j < count; j += lanes)
        {
            int p = first + j, row = (a.Ring != 0 ? p % a.Capacity : p) * a.KvHeads + g;
            long kv = (long)row * hd;
            float dot = 0;
            if (a.Int8 != 0)
            {
                for (int i = 0; i < hd; i++) dot += q[qh + i] * codes[kv + i];
                dot = scales[row] * (dot - zeros[row] * qSum);
            }
            else
                for (int i = 0; i < hd; i++) dot += q[qh + i] * full[kv + i];
            float score = dot * a.Scale;
            scratch[scores + j] = score;
            max = XMath.Max(max, score);
        }
        max = GroupReduce<MaxFloat>(max, lane, lanes, 1);
        float sum = 0;
        for (int j = lane; j < count; j += lanes)
        {
            float e = XMath.Exp(scratch[scores + j] - max);
            scratch[scores + j] = e;
            sum += e;
        }
        float pOwn = XMath.Exp(ownScore - max);
        // the reduction's barriers also publish every lane's weights in scratch
        float inv = 1f / (GroupReduce<AddFloat>(sum, lane, lanes, 1) + pOwn);
        for (int i = lane; i < hd; i += lanes)
        {
            float acc = 0;
            for (int j = 0; j < count; j++)
            {
                int p = first + j, row = (a.Ring != 0 ? p % a.Capacity : p) * a.KvHeads + g;
                long kv = (long)row * hd + i;
                acc += a.Int8 != 0
                    ? scratch[scores + j] * scales[a.ValueRowOffset + row] * (codes[a.ValueOffset + kv] - zeros[a.ValueRowOffset + row])
                    : scratch[scores + j] * full[a.ValueOffset + kv];
            }
            output[qh + i] = (acc + pOwn * v[own + i]) * inv;
        }
    }

    /// <summary>Reads every word of data once, grid-stride (for the bandwidth measurement); the XOR keeps the loads
    /// alive.</summary>
    public static void ReadWords(Index1D index, ArrayView<int> data, ArrayView<int> sink)
    {
        int acc = 0;
        for (long i = index; i < data.Length; i += sink.Length) acc ^= data[i];
        sink[index] = acc;
    }

    // ---- group reductions ------------------------------------------------------------------------------------------
    // Halving trees over shared memory with a barrier per level; every lane of the group must call them, since a
    // barrier that some lanes skip is undefined. ILGPU's barrier fences global memory, so it also publishes the
    // attention's scratch; its OpenCL form names no local fence (docs/ARCHITECTURE.md, "The OpenCL path on pocl").

    /// <summary>The reduction (<see cref="AddFloat"/>, <see cref="MaxFloat"/>) of <paramref name="value"/> over the
    /// lanes of each residue class mod <paramref name="classes"/> (1: the whole group); lane l gets its class's
    /// result.</summary>
    private static float GroupReduce<TOperation>(float value, int lane, int lanes, int classes)
        where TOperation : struct, IScanReduceOperation<float>
    {
        var operation = default(TOperation);
        var shared = SharedMemory.Allocate<float>(MaxLanes);
        shared[lane] = value;
        Group.Barrier();
        for (int half = lanes >> 1; half >= classes; half >>= 1)
        {
            if (lane < half) shared[lane] = operation.Apply(shared[lane], shared[lane + half]);
            Group.Barrier();
        }
        float total = shared[lane % classes];
        Group.Barrier(); // the next reduction may reuse the array
        return total;
    }
}
