using System.Text;
using ParetoQ.Runtime.Format;

namespace ParetoQ.Runtime.Interchange;

/// <summary>
/// Writes GGUF version 3, llama.cpp's model file: header, typed key/values, tensor infos, then tensor data aligned to
/// <see cref="Alignment"/>. All integers little-endian; strings are a u64 byte length and UTF-8 bytes.
/// </summary>
public sealed class GgufWriter
{
    public const uint Version = 3;
    public const int Alignment = 32; // GGUF's default; written explicitly as general.alignment too
    private static ReadOnlySpan<byte> Magic => "GGUF"u8;

    private enum ValueType
        : uint { UInt8 = 0, Int8, UInt16, Int16, UInt32, Int32, Float32, Bool, String, Array, UInt64, Int64, Float64 }

    private readonly List<(string Key, Action<BinaryWriter> Write)> _values = [];
    private readonly List<(string Name, GgmlType Type, long[] Dims, long Bytes, Func<byte[]> Data)> _tensors = [];
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);

    public GgufWriter() => Add("general.alignment", (uint)Alignment);

    public void Add(string key, string value)
        => AddValue(key, w => { w.Write((uint)ValueType.String); WriteString(w, value); });
    public void Add(string key, uint value) => AddValue(key, w => { w.Write((uint)ValueType.UInt32); w.Write(value); });
    public void Add(string key, float value)
        => AddValue(key, w => { w.Write((uint)ValueType.Float32); w.Write(value); });
    public void Add(string key, bool value)
        => AddValue(key, w => { w.Write((uint)ValueType.Bool); w.Write((byte)(value ? 1 : 0)); });

    public void Add(string key, IReadOnlyList<string> values)
        => AddArray(key, ValueType.String, values.Count, w => { foreach (var v in values) WriteString(w, v); });
    public void Add(string key, IReadOnlyList<float> values)
        => AddArray(key, ValueType.Float32, values.Count, w => { foreach (var v in values) w.Write(v); });
    public void Add(string key, IReadOnlyList<int> values)
        => AddArray(key, ValueType.Int32, values.Count, w => { foreach (var v in values) w.Write(v); });

    /// <summary>Adds a tensor; <paramref name="dims"/> are ggml's ne, fastest-varying first ([cols, rows] for a
    /// matrix).
    /// <paramref name="data"/> is called once, while the file is written, and must return exactly the tensor's
    /// bytes.</summary>
    public void AddTensor(string name, GgmlType type, long[] dims, Func<byte[]> data)
    {
        if (dims.Length is < 1 or > 4
            || dims.Any(d
            => d < 1)) throw new ArgumentException($"tensor {name}: invalid shape [{string.Join(", ", dims)}]");
        if (_tensors.Any(t => t.Name == name)) throw new ArgumentException($"tensor {name} is added twice");
        long bytes = GgmlTypes.RowBytes(type, dims[0]) * dims.Skip(1).Aggregate(1L, (a, b) => a * b);
        _tensors.Add((name, type, dims, bytes, data));
    }

    /// <summary>Writes the file through <see cref="AtomicFile"/>; <paramref name="progress"/> gets (tensors written,
    /// total, name).</summary>
    public void Write(string path, bool overwrite, Action<int, int, string>? progress = null)
    {
        AtomicFile.Write(path, overwrite, fs =>
        {
            using var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true);
            w.Write(Magic);
            w.Write(Version);
            w.Write((ulong)_tensors.Count);
            w.Write((ulong)_values.Count);
            foreach (var (key, write) in _values)
            {
                WriteString(w, key);
                write(w);
            }
            long offset = 0;
            foreach (var t in _tensors)
            {
                WriteString(w, t.Name);
                w.Write((uint)t.Dims.Length);
                foreach (long d in t.Dims) w.Write((ulong)d);
                w.Write((uint)t.Type);
                w.Write((ulong)offset);
                offset = Align(offset + t.Bytes);
            }
            w.Flush();
            AtomicFile.ZeroFill(fs, Align(fs.Position));
            long dataStart = fs.Position;
            for (int i = 0; i < _tensors.Count; i++)
            {
                var t = _tensors[i];
                byte[] bytes = t.Data();
                if (bytes.Length != t.Bytes) throw new InvalidOperationException($"tensor {t.Name}: {bytes.Length} bytes produced, {t.Bytes} declared");
                fs.Write(bytes);
                AtomicFile.ZeroFill(fs, dataStart + Align(fs.Position - dataStart));
                progress?.Invoke(i + 1, _tensors.Count, t.Name);
            }
        });
    }

    private void AddValue(string key, Action<BinaryWriter> write)
    {
        if (!_keys.Add(key)) throw new ArgumentException($"GGUF key {key} is set twice");
        _values.Add((key, write));
    }

    private void AddArray(string key, ValueType elementType, int count, Action<BinaryWriter> writeElements) =>
        AddValue(key, w
            => { w.Write((uint)ValueType.Array); w.Write((uint)elementType); w.Write((ulong)count); writeElements(w); });

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static long Align(long x) => (x + Alignment - 1) / Alignment * Alignment;
}
