using System.Buffers.Binary;

namespace ParetoQ.Runtime.Quantization;

/// <summary>Little-endian fp32 / fp16 / bf16 element codecs for the dense float formats.</summary>
public static class FloatCodec
{
    public static int ElementBytes(WeightFormat format) =>
        WeightFormats.IsFloat(format) ? WeightFormats.Of(format).ElementBytes
            : throw new ArgumentException($"{format} is not a float format", nameof(format));

    /// <summary>bf16 → fp32 is exact: the bf16 bits are the top half of the fp32 bits.</summary>
    public static float Bf16ToSingle(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>fp32 → bf16 with round-to-nearest-even; NaN stays NaN.</summary>
    public static ushort SingleToBf16(float value)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value)) return (ushort)((bits >> 16) | 0x40);
        uint rounding = 0x7FFF + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }

    /// <summary>Reads element <paramref name="index"/> of a dense float tensor.</summary>
    public static float Read(WeightFormat format, ReadOnlySpan<byte> data, long index) => format switch
    {
        WeightFormat.F32 => BinaryPrimitives.ReadSingleLittleEndian(data.Slice(checked((int)(index * 4)), 4)),
        WeightFormat.F16 => (float)BinaryPrimitives.ReadHalfLittleEndian(data.Slice(checked((int)(index * 2)), 2)),
        WeightFormat.BF16
            => Bf16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(data.Slice(checked((int)(index * 2)), 2))),
        _ => throw new ArgumentException($"{format} is not a float format", nameof(format)),
    };

    /// <summary>Decodes <paramref name="dst"/>.Length elements starting at element <paramref name="start"/>.</summary>
    public static void Decode(WeightFormat format, ReadOnlySpan<byte> data, long start, Span<float> dst)
    {
        for (int i = 0; i < dst.Length; i++) dst[i] = Read(format, data, start + i);
    }

    /// <summary>Encodes fp32 values into a new byte array of the given float format.</summary>
    public static byte[] Encode(WeightFormat format, ReadOnlySpan<float> values)
    {
        var dst = new byte[(long)values.Length * ElementBytes(format)];
        for (int i = 0; i < values.Length; i++)
        {
            switch (format)
            {
                case WeightFormat.F32: BinaryPrimitives.WriteSingleLittleEndian(dst.AsSpan(i * 4), values[i]); break;
                case WeightFormat.F16: BinaryPrimitives.WriteHalfLittleEndian(dst.AsSpan(i * 2),
                    (Half)values[i]); break;
                case WeightFormat.BF16: BinaryPrimitives.WriteUInt16LittleEndian(dst.AsSpan(i * 2),
                    SingleToBf16(values[i])); break;
                default: throw new ArgumentException($"{format} is not a float format", nameof(format));
            }
        }
        return dst;
    }

    /// <summary>The value a float format actually stores for v (identity for f32).</summary>
    public static float RoundTrip(WeightFormat format, float v) => format switch
    {
        WeightFormat.F32 => v,
        WeightFormat.F16 => (float)(Half)v,
        WeightFormat.BF16 => Bf16ToSingle(SingleToBf16(v)),
        _ => throw new ArgumentException($"{format} is not a float format", nameof(format)),
    };
}
