using Microsoft.Win32.SafeHandles;
using System.Buffers.Binary;
using System.Text.Json;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Interchange;

/// <summary>A source checkpoint (safetensors, pytorch .bin, index JSON) is malformed or unsupported. The message names
/// the file, the tensor where one is involved, and the problem.</summary>
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

/// <summary>One tensor of a source checkpoint: its place in <see cref="File"/>, absolute byte offset and
/// length. <paramref name="Ggml"/> is the block type of a quantized GGUF tensor, whose values read exactly as
/// <see cref="SourceDType.F32"/>.</summary>
public sealed record SourceTensor(string Name, SourceDType DType, long[] Shape, string File, long Offset, long Length,
    GgmlType? Ggml = null)
{
    public long Elements => Shape.Aggregate(1L, (a, b) => a * b);
    public int ElementBytes => BytesPerElement(DType);

    public static int BytesPerElement(SourceDType dtype) => dtype == SourceDType.F32 ? 4 : 2;
}


/// <summary>Reads source tensors as fp32.</summary>
public interface ITensorReader
{
    /// <summary>Elements [start, start + destination.Length) of the tensor, in row-major order, as fp32.</summary>
    void Read(SourceTensor tensor, long start, Span<float> destination);
}

public static class TensorReaderExtensions
{
    /// <summary>The whole tensor as fp32.</summary>
    public static float[] ReadAll(this ITensorReader reader, SourceTensor tensor)
    {
        if (tensor.Elements > Array.MaxLength) throw new CheckpointException(tensor.File, tensor.Name,
            $"{tensor.Elements} elements do not fit one array; read it in parts");
        var values = new float[tensor.Elements];
        reader.Read(tensor, 0, values);
        return values;
    }
}

/// <summary>One weight file of a checkpoint (a safetensors file, a PyTorch zip).</summary>
public interface ICheckpointFile : ITensorReader, IDisposable
{
    string Path { get; }
    IReadOnlyList<SourceTensor> Tensors { get; }
}

/// <summary>The weights of a Hugging Face checkpoint directory, whatever file format holds them.</summary>
public interface ISourceCheckpoint : ITensorReader, IDisposable
{
    string Directory { get; }
    /// <summary>The weight files, for reports.</summary>
    IReadOnlyList<string> Files { get; }
    IReadOnlyList<SourceTensor> Tensors { get; }
    bool TryGet(string name, out SourceTensor tensor);
}

/// <summary>What a path given to a converter holds, told apart by its first bytes (a directory is Hugging
/// Face).</summary>
public enum SourceKind { HuggingFaceDirectory, Gguf, Pq, Llama2c }

/// <summary>Opens the weights of a checkpoint directory: safetensors when present, else PyTorch
/// <c>pytorch_model.bin</c>.</summary>
public static class SourceCheckpoint
{
    /// <summary>The kind of source at <paramref name="path"/>: a directory, a GGUF or .pq file by its magic, else a
    /// llama2.c checkpoint (the one format without a magic of its own).</summary>
    public static SourceKind KindOf(string path, Func<string, Exception>? error = null)
    {
        if (System.IO.Directory.Exists(path)) return SourceKind.HuggingFaceDirectory;
        using var handle = InputFile.OpenHandle(path, error ?? (problem => new CheckpointException(path, null,
            problem)));
        Span<byte> start = stackalloc byte[8];
        start = start[..RandomAccess.Read(handle, start, 0)];
        return GgufFile.HasMagic(start) ? SourceKind.Gguf
            : start.SequenceEqual(PqFile.Magic) ? SourceKind.Pq
            : SourceKind.Llama2c;
    }

    public static ISourceCheckpoint Open(string directory)
    {
        if (!System.IO.Directory.Exists(directory)) throw new CheckpointException(directory, null,
            "is not a directory");
        if (SafetensorsCheckpoint.IsPresent(directory)) return SafetensorsCheckpoint.Open(directory);
        if (TorchCheckpoint.IsPresent(directory)) return TorchCheckpoint.Open(directory);
        throw new CheckpointException(directory, null,
            $"holds no weights: none of {SafetensorsCheckpoint.SingleFile}, {SafetensorsCheckpoint.IndexFile}, {TorchCheckpoint.SingleFile}, {TorchCheckpoint.IndexFile}");
    }
}

/// <summary>Positional reads of a source tensor's elements, converted to fp32; never past the tensor or the
/// file.</summary>
internal static class SourceTensorReader
{
    /// <summary>Opens a weight file for positional reads and builds its reader; the handle is closed if building
    /// fails.</summary>
    public static T OpenFile<T>(string path, Func<SafeFileHandle, T> build)
    {
        var handle = InputFile.OpenHandle(path, problem => new CheckpointException(path, null, problem));
        try
        {
            return build(handle);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    public static void Read(SafeFileHandle handle, string path, SourceTensor tensor, long start,
        Span<float> destination)
    {
        if (tensor.File != path) throw new ArgumentException($"tensor '{tensor.Name}' belongs to {tensor.File}, not {path}", nameof(tensor));
        SourceTensorReader.CheckRange(tensor, start, destination.Length);
        const int ChunkElements = 1 << 16;
        int size = tensor.ElementBytes;
        var buffer = new byte[Math.Min(destination.Length, ChunkElements) * size];
        for (int done = 0; done < destination.Length;)
        {
            int n = Math.Min(ChunkElements, destination.Length - done);
            var bytes = buffer.AsSpan(0, n * size);
            long offset = tensor.Offset + (start + done) * size;
            ReadExactly(handle, path, tensor.Name, offset, bytes);
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
            // A NaN or infinite weight would quantize to garbage scales and silently wrong logits; every conversion
            // reads through here, so it is refused here.
            CheckFinite(path, tensor, start + done, dst);
            done += n;
        }
    }

    /// <summary>Fills <paramref name="destination"/> from <paramref name="offset"/>; a file that ends first was
    /// truncated after it was opened and checked.</summary>
    public static void ReadExactly(SafeFileHandle handle, string path, string tensor, long offset,
        Span<byte> destination)
    {
        for (int read = 0; read < destination.Length;)
        {
            int n = RandomAccess.Read(handle, destination[read..], offset + read);
            if (n == 0) throw new CheckpointException(path, tensor,
                $"the file ended at byte {offset + read} while reading the tensor (it was truncated after opening)");
            read += n;
        }
    }

    /// <summary>Elements [start, start + count) must lie inside the tensor: a caller's bug otherwise.</summary>
    public static void CheckRange(SourceTensor tensor, long start, int count)
    {
        if (start < 0 || start + count > tensor.Elements)
            throw new ArgumentOutOfRangeException(nameof(start),
                $"elements [{start}, {start + count}) are outside tensor '{tensor.Name}' of {tensor.Elements}");
    }

    /// <summary>Refuses NaN and infinite values; <paramref name="start"/> is the first one's element index.</summary>
    public static void CheckFinite(string path, SourceTensor tensor, long start, ReadOnlySpan<float> values)
    {
        for (int i = 0; i < values.Length; i++)
            if (!float.IsFinite(values[i])) throw new CheckpointException(path, tensor.Name,
                $"element {start + i} is {(float.IsNaN(values[i]) ? "NaN" : values[i] > 0 ? "+infinity" : "-infinity")}; a checkpoint with NaN or infinite weights cannot be converted");
    }
}

/// <summary>
/// A checkpoint directory's weights in one file or in shards named by an index (<c>*.index.json</c>). The index must
/// agree with the shards exactly: every tensor it maps is in that shard, every shard tensor is mapped, and shard names
/// are plain file names inside the directory.
/// </summary>
public sealed class ShardedCheckpoint : ISourceCheckpoint
{
    private const long MaxIndexBytes = 64 << 20;

    private readonly List<ICheckpointFile> _files;
    private readonly Dictionary<string,
        (SourceTensor Tensor, ICheckpointFile File)> _tensors = new(StringComparer.Ordinal);

    public string Directory { get; }
    public IReadOnlyList<string> Files => _files.Select(f => f.Path).ToList();
    public IReadOnlyList<SourceTensor> Tensors { get; }

    private ShardedCheckpoint(string directory, List<ICheckpointFile> files)
    {
        Directory = directory;
        _files = files;
        foreach (var f in files)
            foreach (var t in f.Tensors)
                if (!_tensors.TryAdd(t.Name, (t, f))) throw new CheckpointException(f.Path, t.Name,
                    $"also in {_tensors[t.Name].File.Path}");
        Tensors = files.SelectMany(f => f.Tensors).ToList();
    }

    /// <summary>Opens <paramref name="indexFile"/>'s shards when the index exists, else
    /// <paramref name="singleFile"/>.</summary>
    public static ShardedCheckpoint Open(string directory, string singleFile, string indexFile, Func<string,
        ICheckpointFile> openFile)
    {
        string single = System.IO.Path.Combine(directory, singleFile),
            index = System.IO.Path.Combine(directory, indexFile);
        var files = new List<ICheckpointFile>();
        try
        {
            if (File.Exists(index))
            {
                var map = ReadIndex(index);
                foreach (string shard in map.Values.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
                    files.Add(openFile(System.IO.Path.Combine(directory, shard)));
                var checkpoint = new ShardedCheckpoint(directory, files);
                foreach (var (name, shard) in map)
                {
                    if (!checkpoint._tensors.TryGetValue(name, out var found)) throw new CheckpointException(index,
                        name, $"mapped to {shard}, which does not hold it");
                    if (System.IO.Path.GetFileName(found.File.Path) != shard) throw new CheckpointException(index, name,
                        $"mapped to {shard}, but it is in {System.IO.Path.GetFileName(found.File.Path)}");
                }
                foreach (var t in checkpoint.Tensors)
                    if (!map.ContainsKey(t.Name)) throw new CheckpointException(index, t.Name,
                        $"is in {System.IO.Path.GetFileName(t.File)} but not in the index's weight_map");
                return checkpoint;
            }
            if (File.Exists(single))
            {
                files.Add(openFile(single));
                return new ShardedCheckpoint(directory, files);
            }
            throw new CheckpointException(directory, null, $"no {singleFile} or {indexFile} in the directory");
        }
        catch
        {
            foreach (var f in files) f.Dispose();
            throw;
        }
    }

    /// <summary>Reads a Hugging Face shard index (<c>*.index.json</c>): tensor name → shard file name.</summary>
    private static Dictionary<string, string> ReadIndex(string path)
    {
        CheckpointException Error(string problem) => new(path, null, problem);
        byte[] bytes = InputFile.ReadAll(path, MaxIndexBytes, Error);
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
                if (shard.Length == 0 || shard != System.IO.Path.GetFileName(shard) || shard is "." or ".."
                    || shard.Contains('\\'))
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
        TryGet(name, out var t) ? t
            : throw new CheckpointException(Directory, name, "no such tensor in the checkpoint");

    public void Read(SourceTensor tensor, long start, Span<float> destination)
        => FileOf(tensor).Read(tensor, start, destination);

    private ICheckpointFile FileOf(SourceTensor tensor) =>
        _tensors.TryGetValue(tensor.Name, out var e) && ReferenceEquals(e.Tensor, tensor) ? e.File
            : throw new ArgumentException($"tensor '{tensor.Name}' is not from this checkpoint", nameof(tensor));

    public void Dispose()
    {
        foreach (var f in _files) f.Dispose();
    }
}

/// <summary>The safetensors weights of a checkpoint directory: <c>model.safetensors</c> or its sharded index.</summary>
public static class SafetensorsCheckpoint
{
    public const string SingleFile = "model.safetensors";
    public const string IndexFile = "model.safetensors.index.json";

    public static bool IsPresent(string directory) =>
        File.Exists(Path.Combine(directory, SingleFile)) || File.Exists(Path.Combine(directory, IndexFile));

    public static ShardedCheckpoint Open(string directory)
        => ShardedCheckpoint.Open(directory, SingleFile, IndexFile, SafetensorsFile.Open);
}

/// <summary>The PyTorch weights of a checkpoint directory: <c>pytorch_model.bin</c> or its sharded index.</summary>
public static class TorchCheckpoint
{
    public const string SingleFile = "pytorch_model.bin";
    public const string IndexFile = "pytorch_model.bin.index.json";

    public static bool IsPresent(string directory) =>
        File.Exists(Path.Combine(directory, SingleFile)) || File.Exists(Path.Combine(directory, IndexFile));

    public static ShardedCheckpoint Open(string directory)
        => ShardedCheckpoint.Open(directory, SingleFile, IndexFile, TorchFile.Open);
}
