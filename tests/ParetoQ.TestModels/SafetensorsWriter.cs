using System.Buffers.Binary;
using System.Text.Json;
using System.Text;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.TestModels;

/// <summary>
/// Writes safetensors files as Hugging Face's library does (header JSON padded with spaces to 8 bytes, tensors in the
/// given order, packed without gaps), for building source checkpoints in tests. <see cref="Bytes"/> exposes the raw
/// layout so tests can corrupt it.
/// </summary>
public static class SafetensorsWriter
{
    public sealed record Tensor(string Name, SourceDType DType, long[] Shape, float[] Values);

    public static void Write(string path, IEnumerable<Tensor> tensors, IReadOnlyDictionary<string,
        string>? metadata = null) =>
        File.WriteAllBytes(path, Bytes(tensors, metadata));

    public static byte[] Bytes(IEnumerable<Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var data = new MemoryStream();
        var header = new MemoryStream();
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            if (metadata is not null)
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            foreach (var t in tensors)
            {
                long begin = data.Length;
                data.Write(Encode(t.DType, t.Values));
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.ToString().ToUpperInvariant());
                w.WriteStartArray("shape");
                foreach (long d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(begin);
                w.WriteNumberValue(data.Length);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');
        var file = new byte[8 + header.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.ToArray().CopyTo(file, 8);
        data.ToArray().CopyTo(file, 8 + header.Length);
        return file;
    }

    /// <summary>The bytes of values in a source dtype (BF16 rounds to nearest even, F16 as .NET's Half does).</summary>
    public static byte[] Encode(SourceDType dtype, float[] values)
    {
        int size = SourceTensor.BytesPerElement(dtype);
        var bytes = new byte[values.Length * size];
        for (int i = 0; i < values.Length; i++)
        {
            var dst = bytes.AsSpan(i * size);
            switch (dtype)
            {
                case SourceDType.F32: BinaryPrimitives.WriteSingleLittleEndian(dst, values[i]); break;
                case SourceDType.F16: BinaryPrimitives.WriteHalfLittleEndian(dst, (Half)values[i]); break;
                default: BinaryPrimitives.WriteUInt16LittleEndian(dst, FloatCodec.SingleToBf16(values[i])); break;
            }
        }
        return bytes;
    }

    /// <summary>A file whose header is exactly <paramref name="headerJson"/> followed by <paramref name="dataBytes"/>
    /// bytes of data.</summary>
    public static byte[] Raw(string headerJson, int dataBytes)
    {
        byte[] header = Encoding.UTF8.GetBytes(headerJson);
        var file = new byte[8 + header.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)header.Length);
        header.CopyTo(file, 8);
        return file;
    }
}
