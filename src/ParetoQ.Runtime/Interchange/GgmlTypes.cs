using System.Buffers.Binary;

namespace ParetoQ.Runtime.Interchange;

/// <summary>The ggml tensor types GGUF import and export handle, with ggml's numbering.</summary>
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q8_0 = 8, Q2_K = 10, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35,
}

public static class GgmlTypes
{
    // Every type ggml numbers, so a refusal names the type; only those of GgmlType are read.
    private static readonly Dictionary<uint, string> KnownNames = new()
    {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [6] = "Q5_0", [7] = "Q5_1", [8] = "Q8_0", [9] = "Q8_1",
        [10] = "Q2_K", [11] = "Q3_K", [12] = "Q4_K", [13] = "Q5_K", [14] = "Q6_K", [15] = "Q8_K", [16] = "IQ2_XXS",
        [17] = "IQ2_XS", [18] = "IQ3_XXS", [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S",
        [23] = "IQ4_XS", [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64", [29] = "IQ1_M",
        [30] = "BF16", [34] = "TQ1_0", [35] = "TQ2_0", [39] = "MXFP4",
    };

    /// <summary>ggml's name of a type number, or "type N" for one it does not have.</summary>
    public static string Name(uint type) => KnownNames.TryGetValue(type, out var name) ? name : $"type {type}";

    public static bool IsFloat(GgmlType type) => type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16;

    /// <summary>Elements per block and bytes per block (ggml's blck_size and type_size).</summary>
    public static (int Elements, int Bytes) Block(GgmlType type) => type switch
    {
        GgmlType.F32 => (1, 4),
        GgmlType.F16 or GgmlType.BF16 => (1, 2),
        GgmlType.Q4_0 => (32, 18),   // fp16 d, 16 bytes of nibbles
        GgmlType.Q8_0 => (32, 34),   // fp16 d, 32 int8
        GgmlType.Q2_K => (256, 84),  // 16 scale/min bytes, 64 bytes of 2-bit codes, fp16 d, fp16 dmin
        GgmlType.TQ1_0 => (256, 54), // 48 bytes of five trits, 4 bytes of four trits, fp16 d
        GgmlType.TQ2_0 => (256, 66), // 64 bytes of 2-bit codes, fp16 d
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type"),
    };

    public static long RowBytes(GgmlType type, long elements)
    {
        var (n, bytes) = Block(type);
        if (elements % n != 0)
            throw new ArgumentException($"a {type} row needs a multiple of {n} elements, not {elements}");
        return elements / n * bytes;
    }

    /// <summary>
    /// Decodes whole blocks to fp32 with ggml's own arithmetic (dequantize_row_*), so every value equals the one
    /// llama.cpp computes: fp16 scales widen exactly and each product is rounded once, as in C.
    /// </summary>
    public static void Dequantize(GgmlType type, ReadOnlySpan<byte> blocks, Span<float> values)
    {
        var (n, size) = Block(type);
        if (values.Length % n != 0 || blocks.Length != values.Length / n * size)
            throw new ArgumentException($"{blocks.Length} bytes of {type} do not hold {values.Length} values");
        for (int b = 0; b < values.Length / n; b++)
        {
            var x = blocks.Slice(b * size, size);
            var y = values.Slice(b * n, n);
            switch (type)
            {
                case GgmlType.F32:
                    y[0] = BinaryPrimitives.ReadSingleLittleEndian(x);
                    break;
                case GgmlType.F16:
                    y[0] = (float)BinaryPrimitives.ReadHalfLittleEndian(x);
                    break;
                case GgmlType.BF16:
                    y[0] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(x) << 16);
                    break;
                case GgmlType.Q4_0:
                {
                    float d = Half16(x);
                    for (int j = 0; j < 16; j++)
                    {
                        y[j] = ((x[2 + j] & 0xF) - 8) * d;
                        y[j + 16] = ((x[2 + j] >> 4) - 8) * d;
                    }
                    break;
                }
                case GgmlType.Q8_0:
                {
                    float d = Half16(x);
                    for (int j = 0; j < 32; j++) y[j] = (sbyte)x[2 + j] * d;
                    break;
                }
                case GgmlType.Q2_K:
                {
                    // Element e: half h = e / 128, shift 2·((e % 128) / 32), byte h·32 + e % 32; scale byte e / 16.
                    float d = Half16(x[80..]), min = Half16(x[82..]);
                    for (int e = 0; e < 256; e++)
                    {
                        int scale = x[e / 16];
                        int q = x[16 + e / 128 * 32 + e % 32] >> (e % 128 / 32 * 2) & 3;
                        float dl = d * (scale & 0xF), ml = min * (scale >> 4);
                        y[e] = dl * q - ml;
                    }
                    break;
                }
                case GgmlType.TQ2_0:
                {
                    float d = Half16(x[64..]);
                    for (int e = 0; e < 256; e++)
                        y[e] = ((x[e / 128 * 32 + e % 32] >> (e % 128 / 32 * 2) & 3) - 1) * d;
                    break;
                }
                case GgmlType.TQ1_0:
                {
                    // Base-3 digits, most significant first: qs[0..32) hold elements 0..160 (five passes of 32),
                    // qs[32..48) elements 160..240, qh[0..4) elements 240..256 (four passes of 4).
                    float d = Half16(x[52..]);
                    int e = 0;
                    for (int n5 = 0; n5 < 5; n5++)
                        for (int m = 0; m < 32; m++) y[e++] = (Trit(x[m], n5) - 1) * d;
                    for (int n5 = 0; n5 < 5; n5++)
                        for (int m = 0; m < 16; m++) y[e++] = (Trit(x[32 + m], n5) - 1) * d;
                    for (int n4 = 0; n4 < 4; n4++)
                        for (int j = 0; j < 4; j++) y[e++] = (Trit(x[48 + j], n4) - 1) * d;
                    break;
                }
                default:
                    throw new ArgumentOutOfRangeException(nameof(type), type, "unknown ggml type");
            }
        }
    }

    private static float Half16(ReadOnlySpan<byte> x) => (float)BinaryPrimitives.ReadHalfLittleEndian(x);

    // TQ1_0 stores a byte as a fixed-point fraction of 3^5 (or 3^4): multiplying by 3^n shifts digit n to the top, and
    // (q · 3) >> 8 reads it.
    private static int Trit(byte packed, int digit)
    {
        byte q = (byte)(packed * Pow3[digit]);
        return q * 3 >> 8;
    }

    private static ReadOnlySpan<byte> Pow3 => [1, 3, 9, 27, 81, 243];
}
