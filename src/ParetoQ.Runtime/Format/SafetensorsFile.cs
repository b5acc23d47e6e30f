using System.Buffers.Binary;
using System.Text.Json;
using Microsoft.Win32.SafeHandles;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Format;

/// <summary>A source checkpoint (safetensors, pytorch .bin, index JSON) is malformed or unsupported. The message names the file, the tensor where one is involved, and the problem.</summary>
public sealed class CheckpointException : Exception
{
    public string FilePath { get; }
    public string? Tensor { get; }

    public CheckpointException(string filePath, string? tensor, string problem, Exception? inner = null)
        : base(tensor is null ? $"{filePath}: {problem}" : $"{filePath}: tensor '{tensor}': {problem}", inner)
    {
        FilePath = filePath;
        Tensor = tensor;
    }
}

/// <summary>Element types of source checkpoints: the float types Hugging Face checkpoints are stored in.</summary>
public enum SourceDType { F32, F16, BF16 }

/// <summary>One tensor of a source checkpoint: its place in <see cref="File"/>, absolute byte offset and length.</summary>
public sealed record SourceTensor(string Name, SourceDType DType, long[] Shape, string File, long Offset, long Length)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
    public int ElementBytes => BytesPerElement(DType);

    public static int BytesPerElement(SourceDType dtype) => dtype == SourceDType.F32 ? 4 : 2;
}

/// <summary>
/// A strict safetensors reader: an 8-byte little-endian header length, a JSON header of at most 100 MB, then the data.
/// Every tensor's dtype, shape and offsets are validated before any data is read: offsets inside the data, byte length
/// equal to elements × element size, no overlaps and no holes (the format requires the buffer to be fully indexed),
/// unique names, and no fields the format does not define. Reads go through positional file reads, never past the end.
/// </summary>
public sealed class SafetensorsFile : IDisposable
{
    /// <summary>The format's own limit on the header, which also bounds what a hostile file can make us allocate.</summary>
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

    private SafetensorsFile(string path, SafeFileHandle handle, long length, List<SourceTensor> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        FileLength = length;
        Tensors = tensors;
        Metadata = metadata;
        _byName = tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
    }

    public static SafetensorsFile Open(string path)
    {
        SafeFileHandle handle;
        try
        {
            handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            throw new CheckpointException(path, null, $"cannot open: {e.Message}", e);
        }
        try
        {
            long length = RandomAccess.GetLength(handle);
            var (tensors, metadata) = ReadHeader(path, handle, length);
            return new SafetensorsFile(path, handle, length, tensors, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public bool TryGet(string name, out SourceTensor tensor) => _byName.TryGetValue(name, out tensor!);

    public SourceTensor this[string name] =>
        _byName.TryGetValue(name, out var t) ? t : throw new CheckpointException(Path, name, "no such tensor in the file");

    /// <summary>Elements [start, start + destination.Length) of the tensor, in row-major order, as fp32.</summary>
    public void Read(SourceTensor tensor, long start, Span<float> destination)
    {
        if (tensor.File != Path) throw new ArgumentException($"tensor '{tensor.Name}' belongs to {tensor.File}, not {Path}", nameof(tensor));
        if (start < 0 || start + destination.Length > tensor.Elements)
            throw new ArgumentOutOfRangeException(nameof(start), $"elements [{start}, {start + destination.Length}) are outside tensor '{tensor.Name}' of {tensor.Elements}");
        ReadElements(_handle, Path, tensor, start, destination);
    }

    /// <summary>The whole tensor as fp32.</summary>
    public float[] ReadAll(SourceTensor tensor)
    {
        if (tensor.Elements > Array.MaxLength) throw new CheckpointException(Path, tensor.Name, $"{tensor.Elements} elements do not fit one array; read it in parts");
        var values = new float[tensor.Elements];
        Read(tensor, 0, values);
        return values;
    }

    internal static void ReadElements(SafeFileHandle handle, string path, SourceTensor tensor, long start, Span<float> destination)
    {
        const int ChunkElements = 1 << 16;
        int size = tensor.ElementBytes;
        var buffer = new byte[Math.Min(destination.Length, ChunkElements) * size];
        for (int done = 0; done < destination.Length;)
        {
            int n = Math.Min(ChunkElements, destination.Length - done);
            var bytes = buffer.AsSpan(0, n * size);
            long offset = tensor.Offset + (start + done) * size;
            int read = 0;
            while (read < bytes.Length)
            {
                int r = RandomAccess.Read(handle, bytes[read..], offset + read);
                if (r == 0) throw new CheckpointException(path, tensor.Name, $"the file ended at byte {offset + read} while reading the tensor (it was truncated after opening)");
                read += r;
            }
            var dst = destination.Slice(done, n);
            switch (tensor.DType)
            {
                case SourceDType.F32:
                    for (int i = 0; i < n; i++) dst[i] = BinaryPrimitives.ReadSingleLittleEndian(bytes[(4 * i)..]);
                    break;
                case SourceDType.F16:
                    for (int i = 0; i < n; i++) dst[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(bytes[(2 * i)..]);
                    break;
                default:
                    for (int i = 0; i < n; i++) dst[i] = FloatCodec.Bf16ToSingle(BinaryPrimitives.ReadUInt16LittleEndian(bytes[(2 * i)..]));
                    break;
            }
            done += n;
        }
    }

    private static (List<SourceTensor>, Dictionary<string, string>) ReadHeader(string path, SafeFileHandle handle, long fileLength)
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
                        if (!metadata.TryAdd(m.Name, m.Value.GetString()!)) throw Error($"__metadata__ key '{m.Name}' appears twice");
                    }
                    continue;
                }
                if (name.Length == 0 || name.Length > MaxNameLength) throw Error($"a tensor name is {name.Length} characters (1..{MaxNameLength} allowed)");
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

    private static SourceTensor ParseTensor(string path, string name, JsonElement value, long dataStart, long dataLength)
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
                    if (field.Value.ValueKind != JsonValueKind.Array || field.Value.GetArrayLength() > MaxRank) throw Error($"shape must be an array of at most {MaxRank} dimensions");
                    shape = field.Value.EnumerateArray().Select(d =>
                        d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out long v) && v >= 0 ? v : throw Error($"shape holds {d.GetRawText()}, not a non-negative integer")).ToArray();
                    break;
                case "data_offsets" when begin < 0:
                    if (field.Value.ValueKind != JsonValueKind.Array || field.Value.GetArrayLength() != 2) throw Error("data_offsets must be [begin, end]");
                    var o = field.Value.EnumerateArray().Select(d =>
                        d.ValueKind == JsonValueKind.Number && d.TryGetInt64(out long v) && v >= 0 ? v : throw Error($"data_offsets holds {d.GetRawText()}, not a non-negative integer")).ToArray();
                    (begin, end) = (o[0], o[1]);
                    break;
                default:
                    throw Error($"unexpected or repeated field '{field.Name}' (a tensor has dtype, shape and data_offsets)");
            }
        }
        if (dtypeText is null || shape is null || begin < 0) throw Error("dtype, shape and data_offsets are all required");
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
            if (d != 0 && elements > long.MaxValue / d / 4) throw Error($"shape [{string.Join(", ", shape)}] is too large");
            else elements *= d;
        long bytes = elements * SourceTensor.BytesPerElement(dtype);
        if (bytes != end - begin) throw Error($"shape [{string.Join(", ", shape)}] of {dtypeText} needs {bytes} bytes, but data_offsets span {end - begin}");
        return new SourceTensor(name, dtype, shape, path, dataStart + begin, end - begin);
    }

    public void Dispose() => _handle.Dispose();
}

/// <summary>
/// The safetensors weights of a Hugging Face checkpoint directory: <c>model.safetensors</c>, or the shards that
/// <c>model.safetensors.index.json</c> names. The index must agree with the shards exactly: every tensor it maps is in
/// that shard, every shard tensor is mapped, and shard names are plain file names inside the directory.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";
    private const long MaxIndexBytes = 64 << 20;

    private readonly List<SafetensorsFile> _files;
    private readonly Dictionary<string, (SourceTensor Tensor, SafetensorsFile File)> _tensors;

    public string Directory { get; }
    public IReadOnlyList<SourceTensor> Tensors { get; }
    public IReadOnlyList<string> Files => _files.Select(f => f.Path).ToList();

    private SafetensorsCheckpoint(string directory, List<SafetensorsFile> files)
    {
        Directory = directory;
        _files = files;
        _tensors = new(StringComparer.Ordinal);
        foreach (var f in files)
            foreach (var t in f.Tensors)
                if (!_tensors.TryAdd(t.Name, (t, f))) throw new CheckpointException(f.Path, t.Name, $"also in {_tensors[t.Name].File.Path}");
        Tensors = files.SelectMany(f => f.Tensors).ToList();
    }

    /// <summary>True when the directory holds safetensors weights (single file or index).</summary>
    public static bool IsPresent(string directory) =>
        File.Exists(System.IO.Path.Combine(directory, SingleFile)) || File.Exists(System.IO.Path.Combine(directory, IndexFile));

    public static SafetensorsCheckpoint Open(string directory)
    {
        string single = System.IO.Path.Combine(directory, SingleFile), index = System.IO.Path.Combine(directory, IndexFile);
        var files = new List<SafetensorsFile>();
        try
        {
            if (File.Exists(index))
            {
                var map = ReadIndex(index);
                foreach (string shard in map.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
                    files.Add(SafetensorsFile.Open(System.IO.Path.Combine(directory, shard)));
                var checkpoint = new SafetensorsCheckpoint(directory, files);
                foreach (var (name, shard) in map)
                {
                    if (!checkpoint._tensors.TryGetValue(name, out var found)) throw new CheckpointException(index, name, $"mapped to {shard}, which does not hold it");
                    if (System.IO.Path.GetFileName(found.File.Path) != shard) throw new CheckpointException(index, name, $"mapped to {shard}, but it is in {System.IO.Path.GetFileName(found.File.Path)}");
                }
                foreach (var t in checkpoint.Tensors)
                    if (!map.ContainsKey(t.Name)) throw new CheckpointException(index, t.Name, $"is in {System.IO.Path.GetFileName(t.File)} but not in the index's weight_map");
                return checkpoint;
            }
            if (File.Exists(single))
            {
                files.Add(SafetensorsFile.Open(single));
                return new SafetensorsCheckpoint(directory, files);
            }
            throw new CheckpointException(directory, null, $"no {SingleFile} or {IndexFile} in the directory");
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    private static Dictionary<string, string> ReadIndex(string path)
    {
        CheckpointException Error(string problem) => new(path, null, problem);
        byte[] bytes;
        try
        {
            if (new FileInfo(path).Length > MaxIndexBytes) throw Error($"the index is larger than {MaxIndexBytes} bytes");
            bytes = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, null, $"cannot read: {e.Message}", e);
        }
        using (var doc = StrictJson.Parse(bytes, 8, "the index", Error))
        {
            var json = new StrictJson(doc.RootElement, "", Error);
            json.OptionalObject("metadata");   // total_size and friends: informational
            json.Object("weight_map");         // checks it is an object without repeated names
            json.RejectUnknown();
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var p in doc.RootElement.GetProperty("weight_map").EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String) throw Error($"weight_map.{p.Name} must be a file name string");
                string shard = p.Value.GetString()!;
                if (shard.Length == 0 || shard != System.IO.Path.GetFileName(shard) || shard is "." or ".." || shard.Contains('\\'))
                    throw Error($"weight_map.{p.Name} names '{shard}', which is not a plain file name in the checkpoint directory");
                if (!map.TryAdd(p.Name, shard)) throw Error($"weight_map.{p.Name} appears twice");
            }
            if (map.Count == 0) throw Error("weight_map is empty");
            return map;
        }
    }

    public bool TryGet(string name, out SourceTensor tensor)
    {
        bool found = _tensors.TryGetValue(name, out var entry);
        tensor = entry.Tensor;
        return found;
    }

    public SourceTensor this[string name] =>
        TryGet(name, out var t) ? t : throw new CheckpointException(Directory, name, "no such tensor in the checkpoint");

    public void Read(SourceTensor tensor, long start, Span<float> destination) => FileOf(tensor).Read(tensor, start, destination);

    public float[] ReadAll(SourceTensor tensor) => FileOf(tensor).ReadAll(tensor);

    private SafetensorsFile FileOf(SourceTensor tensor) =>
        _tensors.TryGetValue(tensor.Name, out var e) && ReferenceEquals(e.Tensor, tensor) ? e.File
            : throw new ArgumentException($"tensor '{tensor.Name}' is not from this checkpoint", nameof(tensor));

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}
