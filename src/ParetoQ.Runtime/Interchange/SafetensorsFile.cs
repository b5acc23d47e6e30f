using Microsoft.Win32.SafeHandles;
using System.Buffers.Binary;
using System.Text.Json;
using ParetoQ.Runtime.Format;

namespace ParetoQ.Runtime.Interchange;

/// <summary>
/// A strict safetensors reader: an 8-byte little-endian header length, a JSON header of at most 100 MB, then the data.
/// Every tensor's dtype, shape and offsets are validated before any data is read: offsets inside the data, byte length
/// equal to elements × element size, no overlaps and no holes (the format requires the buffer to be fully indexed),
/// unique names, and no fields the format does not define. Reads go through positional file reads, never past the end.
/// </summary>
public sealed class SafetensorsFile : ICheckpointFile
{
    /// <summary>The format's own limit on the header, which also bounds what a hostile file can make us
    /// allocate.</summary>
    public const long MaxHeaderBytes = 100_000_000;
    private const int MaxNameLength = 1024;
    private const int MaxRank = 8;

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, SourceTensor> _byName;

    public string Path { get; }
    public long FileLength { get; }
    /// <summary>Tensors in data order.</summary>
    public IReadOnlyList<SourceTensor> Tensors { get; }
    /// <summary>The optional <c>__metadata__</c> map (string to string).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsFile(string path, SafeFileHandle handle, long length, List<SourceTensor> tensors,
        Dictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        FileLength = length;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public static SafetensorsFile Open(string path) => SourceTensorReader.OpenFile(path, handle =>
    {
        long length = RandomAccess.GetLength(handle);
        var (tensors, metadata) = ReadHeader(path, handle, length);
        return new SafetensorsFile(path, handle, length, tensors, metadata);
    });

    public bool TryGet(string name, out SourceTensor tensor) => _byName.TryGetValue(name, out tensor!);

    public SourceTensor this[string name] =>
        _byName.TryGetValue(name, out var t) ? t
            : throw new CheckpointException(Path, name, "no such tensor in the file");

    public void Read(SourceTensor tensor, long start, Span<float> destination)
        => SourceTensorReader.Read(_handle, Path, tensor, start, destination);

    private static (List<SourceTensor>, Dictionary<string, string>) ReadHeader(string path, SafeFileHandle handle,
        long fileLength)
    {
        CheckpointException Error(string problem, string? tensor = null) => new(path, tensor, problem);
        if (fileLength < 8) throw Error($"file is {fileLength} bytes, shorter than the 8-byte header length (truncated or not safetensors)");
        Span<byte> prefix = stackalloc byte[8];
        RandomAccess.Read(handle, prefix, 0);
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(prefix);
        if (headerLength > MaxHeaderBytes) throw Error($"header length {headerLength} exceeds the format's limit of {MaxHeaderBytes} bytes (corrupt or not safetensors)");
        if ((long)headerLength > fileLength - 8) throw Error($"header length {headerLength} runs past the end of the {fileLength}-byte file (truncated)");
        if (headerLength < 2) throw Error($"header length {headerLength} is too short for a JSON object");
        var header = new byte[headerLength];
        if (RandomAccess.Read(handle, header, 8) != header.Length) throw Error("the header could not be read whole");
        if (header[0] != (byte)'{') throw Error("the header does not start with '{' (not safetensors)");
        long dataStart = 8 + (long)headerLength, dataLength = fileLength - dataStart;

        // The format pads the header with trailing spaces, which JSON allows.
        using (var doc = StrictJson.Parse(header, 8, "the header", msg => Error(msg)))
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Error("the header must be a JSON object");
            var tensors = new List<SourceTensor>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var entry in doc.RootElement.EnumerateObject())
            {
                string name = entry.Name;
                if (!names.Add(name)) throw Error($"'{name}' appears twice in the header");
                if (name == "__metadata__")
                {
                    if (entry.Value.ValueKind != JsonValueKind.Object) throw Error("__metadata__ must be an object of strings");
                    foreach (var m in entry.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw Error($"__metadata__ value '{m.Name}' must be a string, not {m.Value.ValueKind.ToString().ToLowerInvariant()}");
                        if (!metadata.TryAdd(m.Name,
                            m.Value.GetString()!)) throw Error($"__metadata__ key '{m.Name}' appears twice");
                    }
                    continue;
                }
                if (name.Length == 0
                    || name.Length > MaxNameLength) throw Error($"a tensor name is {name.Length} characters (1..{MaxNameLength} allowed)");
                tensors.Add(ParseTensor(path, name, entry.Value, dataStart, dataLength));
            }
            tensors.Sort((a, b) => a.Offset != b.Offset ? a.Offset.CompareTo(b.Offset) : a.Length.CompareTo(b.Length));
            long expected = dataStart;
            foreach (var t in tensors)
            {
                if (t.Offset < expected) throw Error($"its bytes overlap the tensor before it (starts at data offset {t.Offset - dataStart}, before {expected - dataStart})", t.Name);
                if (t.Offset > expected) throw Error($"a hole of {t.Offset - expected} bytes precedes it at data offset {expected - dataStart} (the data must be fully indexed)", t.Name);
                expected = t.Offset + t.Length;
            }
            if (expected != fileLength) throw Error($"{fileLength - expected} bytes after the last tensor belong to no tensor (corrupt, or data appended)");
            return (tensors, metadata);
        }
    }

    private static SourceTensor ParseTensor(string path, string name, JsonElement value, long dataStart,
        long dataLength)
    {
        CheckpointException Error(string problem) => new(path, name, problem);
        if (value.ValueKind != JsonValueKind.Object) throw Error("the header entry must be an object");
        string? dtypeText = null;
        long[]? shape = null;
        long begin = -1, end = -1;
        foreach (var field in value.EnumerateObject())
        {
            switch (field.Name)
            {
                case "dtype" when dtypeText is null:
                    if (field.Value.ValueKind != JsonValueKind.String) throw Error("dtype must be a string");
                    dtypeText = field.Value.GetString()!;
                    break;
                case "shape" when shape is null:
                    if (field.Value.ValueKind != JsonValueKind.Array
                        || field.Value.GetArrayLength() > MaxRank) throw Error($"shape must be an array of at most {MaxRank} dimensions");
                    shape = field.Value.EnumerateArray().Select(d =>
                        d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out long v) && v >= 0 ? v
                            : throw Error($"shape holds {d.GetRawText()}, not a non-negative integer")).ToArray();
                    break;
                case "data_offsets" when begin < 0:
                    if (field.Value.ValueKind != JsonValueKind.Array
                        || field.Value.GetArrayLength() != 2) throw Error("data_offsets must be [begin, end]");
                    var o = field.Value.EnumerateArray().Select(d =>
                        d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out long v) && v >= 0 ? v
                            : throw Error($"data_offsets holds {d.GetRawText()}, not a non-negative integer")).ToArray();
                    (begin, end) = (o[0], o[1]);
                    break;
                default:
                    throw Error($"unexpected or repeated field '{field.Name}' (a tensor has dtype, shape and data_offsets)");
            }
        }
        if (dtypeText is null || shape is null
            || begin < 0) throw Error("dtype, shape and data_offsets are all required");
        var dtype = dtypeText switch
        {
            "F32" => SourceDType.F32,
            "F16" => SourceDType.F16,
            "BF16" => SourceDType.BF16,
            _ => throw Error($"dtype {dtypeText} is not supported (F32, F16 and BF16 are)"),
        };
        if (end < begin) throw Error($"data_offsets [{begin}, {end}] end before they begin");
        if (end > dataLength) throw Error($"data_offsets end {end} is past the {dataLength} bytes of data (truncated)");
        long elements = 1;
        foreach (long d in shape)
            if (d != 0
                && elements > long.MaxValue / d / 4) throw Error($"shape [{string.Join(", ", shape)}] is too large");
            else elements *= d;
        long bytes = elements * SourceTensor.BytesPerElement(dtype);
        if (bytes != end - begin) throw Error($"shape [{string.Join(", ", shape)}] of {dtypeText} needs {bytes} bytes, but data_offsets span {end - begin}");
        return new SourceTensor(name, dtype, shape, path, dataStart + begin, end - begin);
    }

    public void Dispose() => _handle.Dispose();
}

