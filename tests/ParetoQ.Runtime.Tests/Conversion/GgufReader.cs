using System.Buffers.Binary;
using System.Text;

namespace ParetoQ.Runtime.Tests;

/// <summary>
/// A GGUF v3 reader for tests, written from the format's definition and llama.cpp's reference dequantizers
/// (ggml-quants.c dequantize_row_*), independently of the exporter. Strict: every offset and size is checked.
/// </summary>
internal sealed class GgufReader
{
    public sealed record TensorInfo(string Name, long[] Dims, uint Type, long Offset, long Bytes);

    public Dictionary<string, object> Values { get; } = new(StringComparer.Ordinal);
    public Dictionary<string, TensorInfo> Tensors { get; } = new(StringComparer.Ordinal);
    public List<string> TensorOrder { get; } = [];
    private readonly byte[] _file;
    private readonly long _dataStart;

    public GgufReader(string path)
    {
        _file = File.ReadAllBytes(path);
        if (Encoding.ASCII.GetString(_file, 0, 4) != "GGUF") throw new InvalidDataException("bad magic");
        int pos = 4;
        if (U32(ref pos) is var version && version != 3) throw new InvalidDataException($"version {version}");
        long tensorCount = (long)U64(ref pos), kvCount = (long)U64(ref pos);
        for (long i = 0; i < kvCount; i++)
        {
            string key = Str(ref pos);
            if (!Values.TryAdd(key,
                Value(ref pos, U32(ref pos)))) throw new InvalidDataException($"duplicate key {key}");
        }
        for (long i = 0; i < tensorCount; i++)
        {
            string name = Str(ref pos);
            uint nDims = U32(ref pos);
            var dims = new long[nDims];
            for (int d = 0; d < nDims; d++) dims[d] = (long)U64(ref pos);
            uint type = U32(ref pos);
            long offset = (long)U64(ref pos);
            var (blockElements, blockBytes) = Block(type);
            if (dims[0] % blockElements != 0) throw new InvalidDataException($"{name}: ne0 {dims[0]} not whole blocks");
            long bytes = dims[0] / blockElements * blockBytes * dims.Skip(1).Aggregate(1L, (a, b) => a * b);
            Tensors.Add(name, new TensorInfo(name, dims, type, offset, bytes));
            TensorOrder.Add(name);
        }
        uint alignment = Values.TryGetValue("general.alignment", out var a) ? (uint)a : 32;
        _dataStart = (pos + alignment - 1) / alignment * alignment;
        var spans = Tensors.Values.OrderBy(t => t.Offset).ToList();
        for (int i = 0; i < spans.Count; i++)
        {
            if (spans[i].Offset % alignment != 0) throw new InvalidDataException($"{spans[i].Name} is not aligned");
            if (_dataStart + spans[i].Offset + spans[i].Bytes > _file.Length) throw new InvalidDataException($"{spans[i].Name} runs past the end");
            if (i > 0
                && spans[i - 1].Offset + spans[i - 1].Bytes > spans[i].Offset) throw new InvalidDataException($"{spans[i].Name} overlaps");
        }
    }

    public T Get<T>(string key) => (T)Values[key];

    /// <summary>The tensor's values, row-major with ne0 fastest.</summary>
    public float[] Dequantize(string name)
    {
        var t = Tensors[name];
        var data = _file.AsSpan((int)(_dataStart + t.Offset), (int)t.Bytes);
        long count = t.Dims.Aggregate(1L, (x, y) => x * y);
        var y = new float[count];
        float Half(ReadOnlySpan<byte> b) => (float)BinaryPrimitives.ReadHalfLittleEndian(b);
        switch (t.Type)
        {
            case 0: for (int i = 0; i < count; i++) y[i] = BinaryPrimitives.ReadSingleLittleEndian(data[(i * 4)..]); break;
            case 1: for (int i = 0; i < count; i++) y[i] = Half(data[(i * 2)..]); break;
            case 30: for (int i = 0; i < count; i++) y[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(data[(i * 2)..]) << 16); break;
            case 2: // Q4_0: d, qs[16]; x[j] = (lo − 8)·d, x[j+16] = (hi − 8)·d
                for (int b = 0; b < count / 32; b++)
                {
                    var blk = data.Slice(b * 18, 18);
                    float d = Half(blk);
                    for (int j = 0; j < 16; j++)
                    {
                        y[b * 32 + j] = ((blk[2 + j] & 0xF) - 8) * d;
                        y[b * 32 + j + 16] = ((blk[2 + j] >> 4) - 8) * d;
                    }
                }
                break;
            case 8: // Q8_0: d, qs[32]
                for (int b = 0; b < count / 32; b++)
                {
                    var blk = data.Slice(b * 34, 34);
                    float d = Half(blk);
                    for (int j = 0; j < 32; j++) y[b * 32 + j] = (sbyte)blk[2 + j] * d;
                }
                break;
            case 10: // Q2_K: scales[16], qs[64], d, dmin
                for (int b = 0; b < count / 256; b++)
                {
                    var blk = data.Slice(b * 84, 84);
                    float d = Half(blk[80..]), min = Half(blk[82..]);
                    int o = b * 256, isc = 0;
                    for (int n = 0; n < 2; n++)
                        for (int shift = 0; shift < 8; shift += 2)
                            for (int half = 0; half < 2; half++)
                            {
                                byte sc = blk[isc++];
                                float dl = d * (sc & 0xF), ml = min * (sc >> 4);
                                for (int l = 0; l < 16; l++) y[o++] = dl * ((blk[16 + n * 32 + half * 16 + l] >> shift) & 3) - ml;
                            }
                }
                break;
            case 35: // TQ2_0: qs[64], d; y[j*4 + l*32 + m] = ((qs[j+m] >> 2l) & 3) − 1) · d
                for (int b = 0; b < count / 256; b++)
                {
                    var blk = data.Slice(b * 66, 66);
                    float d = Half(blk[64..]);
                    for (int j = 0; j < 64; j += 32)
                        for (int l = 0; l < 4; l++)
                            for (int m = 0; m < 32; m++)
                                y[b * 256 + j * 4 + l * 32 + m] = (((blk[j + m] >> (l * 2)) & 3) - 1) * d;
                }
                break;
            default: throw new InvalidDataException($"type {t.Type}");
        }
        return y;
    }

    private static (int, int) Block(uint type) => type switch
    {
        0 => (1, 4), 1 or 30 => (1, 2), 2 => (32, 18), 8 => (32, 34), 10 => (256, 84), 35 => (256, 66),
        _ => throw new InvalidDataException($"unexpected ggml type {type}"),
    };

    private object Value(ref int pos, uint type) => type switch
    {
        0 => _file[pos++],
        4 => U32(ref pos),
        5 => (int)U32(ref pos),
        6 => BitConverter.UInt32BitsToSingle(U32(ref pos)),
        7 => _file[pos++] switch { 0 => false, 1 => true, var v => throw new InvalidDataException($"bool {v}") },
        8 => Str(ref pos),
        9 => Array(ref pos),
        10 => U64(ref pos),
        _ => throw new InvalidDataException($"value type {type}"),
    };

    private object Array(ref int pos)
    {
        uint elementType = U32(ref pos);
        long n = (long)U64(ref pos);
        var items = new List<object>();
        for (long i = 0; i < n; i++) items.Add(Value(ref pos, elementType));
        return items;
    }

    private uint U32(ref int pos) { uint v = BinaryPrimitives.ReadUInt32LittleEndian(_file.AsSpan(pos)); pos += 4; return v; }
    private ulong U64(ref int pos) { ulong v = BinaryPrimitives.ReadUInt64LittleEndian(_file.AsSpan(pos)); pos += 8; return v; }

    private string Str(ref int pos)
    {
        long n = (long)U64(ref pos);
        if (n > _file.Length - pos) throw new InvalidDataException("string past the end");
        string s = new UTF8Encoding(false, true).GetString(_file, pos, (int)n);
        pos += (int)n;
        return s;
    }
}
