using System.Buffers.Binary;

namespace ParetoQ.Runtime.Quantization;

/// <summary>Converts between <see cref="QuantizedMatrix"/> and the packed bytes described by
/// <see cref="PackedLayout"/>.</summary>
public static class WeightPacker
{
    /// <summary>Packs codes and scales into a new tensor byte array of <see cref="PackedLayout.TotalBytes"/>
    /// bytes.</summary>
    public static byte[] Pack(QuantizedMatrix m)
    {
        var layout = new PackedLayout(m.Format, m.Rows, m.Cols);
        int expectedGroupSize = WeightFormats.GroupSize(m.Format) == 0 ? m.Cols : WeightFormats.GroupSize(m.Format);
        if (m.GroupSize != expectedGroupSize || layout.GroupsPerRow != m.Groups)
            throw new ArgumentException($"{WeightFormats.Name(m.Format)} needs group size {expectedGroupSize}, not {m.GroupSize}", nameof(m));
        if (m.Codes.LongLength != (long)m.Rows * m.Cols || m.Scales.LongLength != (long)m.Rows * m.Groups)
            throw new ArgumentException($"{m.Codes.LongLength} codes and {m.Scales.LongLength} scales do not fit [{m.Rows}, {m.Cols}] with {m.Groups} groups per row", nameof(m));
        foreach (float s in m.Scales)
            if (!float.IsFinite(s)
                || s < 0) throw new ArgumentException($"scale {s} is not a finite non-negative number", nameof(m));
        int maxCode = WeightFormats.MaxCode(m.Format);
        var dst = new byte[layout.TotalBytes];
        var rowCodes = new byte[layout.PaddedCols];
        for (int r = 0; r < m.Rows; r++)
        {
            var src = m.Codes.AsSpan(r * m.Cols, m.Cols);
            foreach (byte c in src)
                if (c > maxCode) throw new ArgumentException($"code {c} out of range for {WeightFormats.Name(m.Format)} in row {r}", nameof(m));
            src.CopyTo(rowCodes);
            PackRow(layout, rowCodes, r, dst);
            for (int g = 0; g < m.Groups; g++)
                BinaryPrimitives.WriteSingleLittleEndian(dst.AsSpan(checked((int)(layout.CodeBytes + layout.ScaleIndex(r, g) * 4))), m.Scales[r * m.Groups + g]);
        }
        return dst;
    }

    /// <summary>Writes the codes of one row (length PaddedCols, padding zero) into its chunks.</summary>
    public static void PackRow(in PackedLayout layout, ReadOnlySpan<byte> rowCodes, int row, Span<byte> tensor)
    {
        if (layout.Format == WeightFormat.Q3Row)
        {
            for (int block = 0; block < layout.PaddedCols / 128; block++)
            {
                var codes = rowCodes.Slice(block * 128, 128);
                for (int m = 0; m < 128; m++)
                {
                    SetBits(tensor.Slice((int)layout.ChunkOffset(row, block * 3 + m / 64), 16), m % 64, 2,
                        codes[m] & 3);
                    SetBits(tensor.Slice((int)layout.ChunkOffset(row, block * 3 + 2), 16), m, 1, codes[m] >> 2);
                }
            }
            return;
        }
        int bits = layout.CodeBits, perChunk = 128 / bits;
        for (int k = 0; k < layout.PaddedCols; k++)
            SetBits(tensor.Slice((int)layout.ChunkOffset(row, k / perChunk), 16), k % perChunk, bits, rowCodes[k]);
    }

    /// <summary>
    /// Codes of one row (PaddedCols of them, the padding included), in column order: chunk by chunk, the bulk form of
    /// <see cref="Code"/> (the embedding of every decoded token and each exact-mode row come through here).
    /// </summary>
    public static void UnpackRow(in PackedLayout layout, ReadOnlySpan<byte> tensor, int row, Span<byte> rowCodes)
    {
        if (layout.CodeBits == 3)
        {
            for (int block = 0; block < layout.PaddedCols / 128; block++)
            {
                var lo0 = tensor.Slice((int)layout.ChunkOffset(row, block * 3), 16);
                var lo1 = tensor.Slice((int)layout.ChunkOffset(row, block * 3 + 1), 16);
                var hi = tensor.Slice((int)layout.ChunkOffset(row, block * 3 + 2), 16);
                for (int m = 0; m < 128; m++)
                    rowCodes[block * 128 + m] = (byte)(GetBits(m < 64 ? lo0 : lo1, m % 64, 2) | GetBits(hi, m, 1) << 2);
            }
            return;
        }
        int bits = layout.CodeBits, perChunk = 128 / bits;
        for (int chunk = 0; chunk < layout.ChunksPerRow; chunk++)
        {
            var src = tensor.Slice((int)layout.ChunkOffset(row, chunk), 16);
            for (int m = 0; m < perChunk; m++) rowCodes[chunk * perChunk + m] = (byte)GetBits(src, m, bits);
        }
    }

    /// <summary>
    /// The code of (row, col): b-bit codes sit in bit plane m / 16 of byte m % 16 of their chunk; 3-bit codes take
    /// their low 2 bits from one of a block's two 2-bit chunks and their high bit from its 1-bit chunk.
    /// </summary>
    public static int Code(in PackedLayout layout, ReadOnlySpan<byte> tensor, int row, int col)
    {
        if (layout.CodeBits == 3)
        {
            int block = col / 128, m = col % 128;
            var low = tensor.Slice((int)layout.ChunkOffset(row, block * 3 + m / 64), 16);
            var high = tensor.Slice((int)layout.ChunkOffset(row, block * 3 + 2), 16);
            return GetBits(low, m % 64, 2) | GetBits(high, m, 1) << 2;
        }
        int bits = layout.CodeBits, perChunk = 128 / bits;
        return GetBits(tensor.Slice((int)layout.ChunkOffset(row, col / perChunk), 16), col % perChunk, bits);
    }

    /// <summary>The scale of (row, group).</summary>
    public static float Scale(in PackedLayout layout, ReadOnlySpan<byte> tensor, int row, int group) =>
        BinaryPrimitives.ReadSingleLittleEndian(tensor.Slice((int)(layout.CodeBytes + layout.ScaleIndex(row,
            group) * 4), 4));

    /// <summary>Dequantizes one row into fp32 (length Cols).</summary>
    public static void DequantizeRow(in PackedLayout layout, ReadOnlySpan<byte> tensor, int row, Span<byte> codeScratch,
        Span<float> dst)
    {
        UnpackRow(layout, tensor, row, codeScratch);
        // Quantizer.Dequantize's arithmetic, with the format's map and each group's effective scale looked up once.
        var affine = WeightFormats.Affine(layout.Format);
        for (int g = 0; g < layout.GroupsPerRow; g++)
        {
            float scale = Quantizer.EffectiveScale(layout.Format, Scale(layout, tensor, row, g));
            int end = Math.Min(layout.Cols, (g + 1) * layout.GroupSize);
            for (int k = g * layout.GroupSize; k < end; k++) dst[k] = affine.Value(codeScratch[k], scale);
        }
    }

    // In-chunk weight m sits in byte m % 16, at bit plane m / 16 of width `bits`.
    private static void SetBits(Span<byte> chunk, int m, int bits, int code)
    {
        int shift = m / 16 * bits;
        int mask = ((1 << bits) - 1) << shift;
        chunk[m % 16] = (byte)((chunk[m % 16] & ~mask) | ((code << shift) & mask));
    }

    private static int GetBits(ReadOnlySpan<byte> chunk, int m, int bits) =>
        (chunk[m % 16] >> (m / 16 * bits)) & ((1 << bits) - 1);
}
