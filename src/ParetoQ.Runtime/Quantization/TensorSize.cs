namespace ParetoQ.Runtime.Quantization;

public static class TensorSize
{
    /// <summary>
    /// Bytes a tensor of this format and shape occupies in a .pq file, or −1 when the shape is not valid for the format
    /// (packed formats need a 2-D [rows, cols] shape).
    /// </summary>
    public static long Bytes(WeightFormat format, ReadOnlySpan<int> shape)
    {
        if (shape.Length == 0) return -1;
        long count = 1;
        foreach (int d in shape)
        {
            if (d <= 0) return -1;
            count *= d;
            if (count > (1L << 40)) return -1;
        }
        if (WeightFormats.IsFloat(format)) return count * FloatCodec.ElementBytes(format);
        if (!WeightFormats.IsPacked(format) || shape.Length != 2 || shape[0] > PackedLayout.MaxDim
            || shape[1] > PackedLayout.MaxDim) return -1;
        return new PackedLayout(format, shape[0], shape[1]).TotalBytes;
    }
}
