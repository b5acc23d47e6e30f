using Microsoft.Win32.SafeHandles;
using System.Text;

namespace ParetoQ.Runtime.Interchange;

/// <summary>
/// One <c>pytorch_model.bin</c> written by <c>torch.save</c> (PyTorch ≥ 1.6): a zip holding <c>data.pkl</c> (the
/// state dict, read by <see cref="TorchPickle"/>) and one stored member per storage. Every member's CRC-32 is checked
/// at open, and every tensor must be a contiguous view inside its storage; tensors are then read in place.
/// </summary>
public sealed class TorchFile : ICheckpointFile
{
    private readonly SafeFileHandle _handle;

    public string Path { get; }
    public IReadOnlyList<SourceTensor> Tensors { get; }

    private TorchFile(string path, SafeFileHandle handle, List<SourceTensor> tensors)
    {
        Path = path;
        _handle = handle;
        Tensors = tensors;
    }

    public static TorchFile Open(string path) =>
        SourceTensorReader.OpenFile(path, handle => new TorchFile(path, handle, ReadTensors(path, handle)));

    public void Read(SourceTensor tensor, long start, Span<float> destination)
        => SourceTensorReader.Read(_handle, Path, tensor, start, destination);

    private static List<SourceTensor> ReadTensors(string path, SafeFileHandle handle)
    {
        CheckpointException Error(string problem, string? tensor = null) => new(path, tensor, problem);
        long length = RandomAccess.GetLength(handle);
        Span<byte> magic = stackalloc byte[4];
        if (length < 4
            || RandomAccess.Read(handle, magic,
            0) != 4) throw Error($"file is {length} bytes, too short for a PyTorch checkpoint");
        if (magic[0] == 0x80) throw Error("this is the legacy (before PyTorch 1.6) torch.save format, which is not supported; re-save it with a current PyTorch or as safetensors");
        if (!magic.SequenceEqual("PK\x03\x04"u8)) throw Error("not a PyTorch zip checkpoint (no zip signature)");

        var entries = ZipDirectory.Read(handle, path, length);
        var pickles = entries.Where(e => e.Name == "data.pkl"
            || e.Name.EndsWith("/data.pkl", StringComparison.Ordinal)).ToList();
        if (pickles.Count != 1) throw Error($"expected one data.pkl member, found {pickles.Count}");
        string prefix = pickles[0].Name[..^"data.pkl".Length];
        var members = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        foreach (var e in entries) ZipDirectory.VerifyCrc(handle, path, e);

        if (members.TryGetValue(prefix + "byteorder", out var byteorder))
        {
            if (byteorder.Length > 16) throw Error("the byteorder member is too long");
            var text = new byte[byteorder.Length];
            ZipDirectory.ReadExactly(handle, path, text, byteorder.DataOffset);
            if (Encoding.ASCII.GetString(text) != "little") throw Error($"byteorder is '{Encoding.ASCII.GetString(text)}'; only little-endian checkpoints are supported");
        }
        if (pickles[0].Length > TorchPickle.MaxPickleBytes) throw Error($"data.pkl is {pickles[0].Length} bytes, more than the {TorchPickle.MaxPickleBytes} a state dict needs");
        var pickle = new byte[pickles[0].Length];
        ZipDirectory.ReadExactly(handle, path, pickle, pickles[0].DataOffset);

        var tensors = new List<SourceTensor>();
        foreach (var (name, t) in TorchPickle.ReadStateDict(pickle, path))
        {
            if (!members.TryGetValue($"{prefix}data/{t.Storage.Key}",
                out var member)) throw Error($"its storage data/{t.Storage.Key} is not in the archive", name);
            int size = SourceTensor.BytesPerElement(t.Storage.DType);
            // Compared by division: the pickle's element count is untrusted, and count × size can wrap to the
            // member's length.
            if (member.Length % size != 0 || member.Length / size != t.Storage.Elements)
                throw Error($"storage data/{t.Storage.Key} holds {member.Length} bytes, not the {t.Storage.Elements} × {size} the pickle declares", name);
            long elements = 1, expectedStride = 1;
            for (int d = t.Shape.Length - 1; d >= 0; d--)
            {
                long dim = t.Shape[d];
                if (dim < 0
                    || (dim > 0
                    && elements > long.MaxValue / 8 / dim)) throw Error($"size [{string.Join(", ", t.Shape)}] is invalid", name);
                if (dim > 1
                    && t.Stride[d] != expectedStride) throw Error($"stride [{string.Join(", ", t.Stride)}] is not contiguous row-major; save it with .contiguous()", name);
                expectedStride *= dim;
                elements *= dim;
            }
            if (t.StorageOffset < 0 || t.StorageOffset > t.Storage.Elements
                || elements > t.Storage.Elements - t.StorageOffset)
                throw Error($"elements [{t.StorageOffset}, {t.StorageOffset + elements}) lie outside its storage of {t.Storage.Elements}", name);
            tensors.Add(new SourceTensor(name, t.Storage.DType, t.Shape, path,
                member.DataOffset + t.StorageOffset * size, elements * size));
        }
        return tensors;
    }

    public void Dispose() => _handle.Dispose();
}
