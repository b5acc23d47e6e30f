using System.Buffers.Binary;
using System.IO.Hashing;
using System.IO.MemoryMappedFiles;
using System.Text.Json;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Format;

/// <summary>
/// An open .pq file: the header and metadata are validated, every tensor's bounds, shape and (by default) checksum
/// are checked, and tensors are handed out as zero-copy views into a read-only memory map. See docs/FORMAT.md.
/// </summary>
public sealed unsafe class PqFile : IDisposable
{
    public static ReadOnlySpan<byte> Magic => "PARETOQ\0"u8;
    public const int Version = 1;
    public const int HeaderSize = 64;
    public const int Alignment = 64;
    /// <summary>Metadata larger than this is refused before anything is allocated for it.</summary>
    public const int MaxMetadataBytes = 64 << 20;
    public const int MaxTensors = 1 << 16;
    /// <summary>The longest chat template a file holds, in characters.</summary>
    public const int MaxChatTemplateChars = 1 << 20;
    public const int MaxNameLength = 512;
    /// <summary>The largest token id any model may use (<see cref="ModelConfig.MaxVocabSize"/> − 1).</summary>
    public const int MaxTokenId = ModelConfig.MaxVocabSize - 1;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _resident; // the whole file, when resident; otherwise the map holds it
    private byte* _base;
    private readonly Dictionary<string, PqTensor> _byName;
    private readonly long _tokenizerOffset;
    private readonly int _tokenizerLength;

    public string Path { get; }
    public long FileLength { get; }
    public long DataOffset { get; }
    public JsonElement Config { get; }
    public PqTokenizerInfo Tokenizer { get; }
    public PqProvenance Provenance { get; }
    public IReadOnlyList<PqTensor> Tensors { get; }

    public ReadOnlySpan<byte> TokenizerBytes
    {
        get
        {
            ThrowIfDisposed();
            return new ReadOnlySpan<byte>(_base + DataOffset + _tokenizerOffset, _tokenizerLength);
        }
    }

    /// <summary>How this file's bytes are held: <see cref="WeightMemory.Mapped"/> or
    /// <see cref="WeightMemory.Resident"/>.</summary>
    public WeightMemory Memory { get; }

    /// <summary>Opens and validates a .pq file. Every problem is reported as a
    /// <see cref="PqFormatException"/>.</summary>
    /// <param name="verifyChecksums">Hash every tensor now (default). Skipping it makes opening O(metadata), for tools
    /// that verify separately.</param>
    /// <param name="memory">Map the file, or read it into huge-page memory (see <see cref="WeightMemory"/>).</param>
    public static PqFile Open(string path, bool verifyChecksums = true, WeightMemory memory = WeightMemory.Mapped) =>
        new(path, verifyChecksums, memory);

    private PqFile(string path, bool verifyChecksums, WeightMemory memory)
    {
        Path = path;
        if (!BitConverter.IsLittleEndian)
            throw Error("this machine is big-endian; .pq files are little-endian and read in place");
        FileStream stream = InputFile.Open(path, Error);
        long metaLength, dataLength;
        ulong metaHash;
        DateTime written;
        using (stream)
        {
            FileLength = stream.Length;
            written = File.GetLastWriteTimeUtc(stream.SafeFileHandle);
            if (FileLength < HeaderSize)
                throw Error($"file is {FileLength} bytes, shorter than the {HeaderSize}-byte header (truncated or not a .pq file)");
            Span<byte> header = stackalloc byte[HeaderSize];
            stream.ReadExactly(header);
            (metaLength, long dataOffset, dataLength, metaHash) = ReadHeader(header);
            DataOffset = dataOffset;
            Memory = ResidentMemory.Resolve(memory, FileLength);
            if (Memory == WeightMemory.Resident)
            {
                // Read, not copied from a map: a file truncated meanwhile is a short read here, never a SIGBUS.
                _resident = ResidentMemory.Allocate(FileLength);
                try
                {
                    stream.Position = 0;
                    for (long done = 0; done < FileLength;)
                    {
                        int n = stream.Read(new Span<byte>(_resident + done,
                            (int)Math.Min(FileLength - done, 1 << 30)));
                        if (n == 0) throw Error($"ended after {done} of {FileLength} bytes while being read");
                        done += n;
                    }
                }
                catch (Exception e)
                {
                    ResidentMemory.Free(_resident);
                    if (e is IOException or UnauthorizedAccessException)
                        throw new PqFormatException(path, null, $"cannot read: {InputFile.Reason(e)}", e);
                    throw;
                }
            }
            else
            {
                try
                {
                    _map = MemoryMappedFile.CreateFromFile(stream, null, 0, MemoryMappedFileAccess.Read,
                        HandleInheritability.None, leaveOpen: true);
                    _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
                }
                catch (Exception e) when (e is IOException or UnauthorizedAccessException)
                {
                    throw new PqFormatException(path, null, $"cannot memory-map: {InputFile.Reason(e)}", e);
                }
            }
        }
        try
        {
            if (_resident != null) _base = _resident;
            else
            {
                _view!.SafeMemoryMappedViewHandle.AcquirePointer(ref _base);
                _base += _view.PointerOffset;
            }
            var meta = new ReadOnlySpan<byte>(_base + HeaderSize, (int)metaLength);
            if (XxHash3.HashToUInt64(meta) != metaHash) throw Error("metadata checksum mismatch (the file is corrupt)");

            using (var doc = StrictJson.Parse(meta.ToArray(), 16, "metadata", msg => Error(msg)))
            {
                var root = new StrictJson(doc.RootElement, "", msg => Error(msg));
                Config = root.Get("config", JsonValueKind.Object).Clone();
                Provenance = ReadProvenance(root.Object("provenance"));
                var tok = root.Object("tokenizer");
                (var tokenizer, _tokenizerOffset, _tokenizerLength, ulong tokHash) = ReadTokenizer(tok, dataLength);
                Tokenizer = tokenizer;
                var tensors = ReadTensors(root.Array("tensors", MaxTensors), dataLength);
                root.RejectUnknown();
                CheckNoOverlap(tensors, dataLength);
                Tensors = tensors;
                _byName = new Dictionary<string, PqTensor>(StringComparer.Ordinal);
                foreach (var t in tensors) _byName[t.Name] = t;
                if (XxHash3.HashToUInt64(TokenizerBytes) != tokHash)
                    throw Error("tokenizer checksum mismatch (the file is corrupt)");
                if (verifyChecksums) VerifyChecksums();
                CheckScales();
            }
            // A mapped file truncated by another process raises SIGBUS on the next read (docs/RELIABILITY.md); one
            // replaced or rewritten while it was loaded is refused here rather than trusted. A symbolic link is
            // checked at its final target, the file that was mapped.
            var now = new FileInfo(path);
            if (now.LinkTarget is not null) now = (FileInfo)(now.ResolveLinkTarget(returnFinalTarget: true) ?? now);
            if (!now.Exists || now.Length != FileLength || now.LastWriteTimeUtc != written)
                throw Error("changed while it was being loaded (another process is writing it; replace model files " +
                    "with a rename, as paretoq-convert does, never in place)");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private (long metaLength, long dataOffset, long dataLength, ulong metaHash) ReadHeader(ReadOnlySpan<byte> h)
    {
        if (!h[..8].SequenceEqual(Magic)) throw Error(ForeignFormat(h) ?? "bad magic: not a .pq file");
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(h[8..]);
        if (version != Version)
            throw Error($"unsupported format version {version} (this build reads version {Version})");
        uint headerSize = BinaryPrimitives.ReadUInt32LittleEndian(h[12..]);
        if (headerSize != HeaderSize) throw Error($"header size {headerSize}, expected {HeaderSize}");
        if (XxHash3.HashToUInt64(h[..56]) != BinaryPrimitives.ReadUInt64LittleEndian(h[56..]))
            throw Error("header checksum mismatch (the file is corrupt)");
        ulong metaLength = BinaryPrimitives.ReadUInt64LittleEndian(h[16..]);
        ulong dataOffset = BinaryPrimitives.ReadUInt64LittleEndian(h[24..]);
        ulong dataLength = BinaryPrimitives.ReadUInt64LittleEndian(h[32..]);
        ulong metaHash = BinaryPrimitives.ReadUInt64LittleEndian(h[40..]);
        if (BinaryPrimitives.ReadUInt64LittleEndian(h[48..]) != 0) throw Error("reserved header bytes are not zero");
        if (metaLength == 0
            || metaLength > MaxMetadataBytes) throw Error($"metadata length {metaLength} is outside 1..{MaxMetadataBytes}");
        if (metaLength > (ulong)(FileLength - HeaderSize))
            throw Error($"metadata ({metaLength} bytes) runs past the end of the {FileLength}-byte file (truncated?)");
        if (dataOffset % Alignment != 0) throw Error($"data offset {dataOffset} is not {Alignment}-byte aligned");
        if (dataOffset < HeaderSize + metaLength) throw Error($"data offset {dataOffset} overlaps the metadata");
        if (dataOffset > (ulong)FileLength || dataLength != (ulong)FileLength - dataOffset)
            throw Error($"data section [{dataOffset}, +{dataLength}) does not end at the file's end ({FileLength} bytes): truncated or trailing bytes");
        return ((long)metaLength, (long)dataOffset, (long)dataLength, metaHash);
    }

    // Files people hand the engine by mistake, recognised by their first bytes so the error can say what to do.
    private string? ForeignFormat(ReadOnlySpan<byte> h) =>
        h[..4].SequenceEqual("GGUF"u8)
            ? $"is a GGUF file (llama.cpp's format), not a .pq file: convert it with paretoq-convert {Path} -o model.pq"
        : h[..4].SequenceEqual("PK\u0003\u0004"u8) || h[8] == (byte)'{'
            ? "is a PyTorch or safetensors checkpoint, not a .pq file: convert its Hugging Face directory with paretoq-convert DIR -o model.pq"
        : null;

    private PqProvenance ReadProvenance(StrictJson p)
    {
        var settings = new Dictionary<string, string>(StringComparer.Ordinal);
        var s = p.Get("settings", JsonValueKind.Object);
        foreach (var kv in s.EnumerateObject())
        {
            if (kv.Value.ValueKind != JsonValueKind.String)
                throw Error($"field 'provenance.settings.{kv.Name}' must be a string");
            if (!settings.TryAdd(kv.Name,
                kv.Value.GetString()!)) throw Error($"field 'provenance.settings.{kv.Name}' appears twice");
        }
        var result = new PqProvenance(p.String("source"), p.String("bits", 16), p.String("tool"), settings);
        p.RejectUnknown();
        return result;
    }

    private (PqTokenizerInfo info, long offset, int length, ulong hash) ReadTokenizer(StrictJson t, long dataLength)
    {
        string kind = t.String("kind", 64);
        if (!TokenizerKinds.IsKnown(kind)) throw Error($"unknown tokenizer kind '{kind}'");
        long offset = t.Int64("offset", 0, dataLength);
        long length = t.Int64("length", 1, int.MaxValue);
        if (offset % Alignment != 0) throw Error($"tokenizer offset {offset} is not {Alignment}-byte aligned");
        if (length > dataLength - offset)
            throw Error($"tokenizer bytes [{offset}, +{length}) run past the data section ({dataLength} bytes)");
        ulong hash = ParseHash(t.String("xxh3", 16), "tokenizer", null);
        // Ids are bounded by the largest vocabulary a config may declare; the tokenizer checks them against the actual
        // one before it sizes anything by them.
        int bos = t.Int("bos_id", -1, MaxTokenId);
        int pad = t.Int("pad_id", -1, MaxTokenId);
        int[] eos = t.IntArray("eos_ids", 64, 0, MaxTokenId);
        var specials = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var kv in t.Get("special_tokens", JsonValueKind.Object).EnumerateObject())
        {
            if (specials.Count >= 1 << 16) throw Error("more than 65536 special tokens");
            if (kv.Value.ValueKind != JsonValueKind.Number || !kv.Value.TryGetInt32(out int id) || id < 0
                || id > MaxTokenId)
                throw Error($"special token '{kv.Name}' must map to an integer id in [0, {MaxTokenId}]");
            if (!specials.TryAdd(kv.Name, id)) throw Error($"special token '{kv.Name}' appears twice");
        }
        string? template = t.OptionalString("chat_template", MaxChatTemplateChars);
        t.RejectUnknown();
        return (new PqTokenizerInfo(kind, bos, eos, pad, specials, template), offset, (int)length, hash);
    }

    private List<PqTensor> ReadTensors(JsonElement array, long dataLength)
    {
        var list = new List<PqTensor>(array.GetArrayLength());
        var names = new HashSet<string>(StringComparer.Ordinal);
        int index = 0;
        foreach (var e in array.EnumerateArray())
        {
            var t = new StrictJson(e, $"tensors[{index}]", msg => Error(msg));
            string name = t.String("name", MaxNameLength);
            if (name.Length == 0) throw Error($"tensors[{index}] has an empty name");
            if (!names.Add(name)) throw new PqFormatException(Path, name, "appears twice in the tensor table");
            Func<string, Exception> tensorError = msg => new PqFormatException(Path, name, msg);
            var tj = new StrictJson(e, "", tensorError);
            string formatName = tj.String("format", 32);
            if (!WeightFormats.TryParse(formatName,
                out var format)) throw tensorError($"unknown format '{formatName}'");
            int[] shape = tj.IntArray("shape", 4, 1, int.MaxValue);
            long offset = tj.Int64("offset", 0, dataLength);
            long length = tj.Int64("length", 1, int.MaxValue);
            ulong hash = ParseHash(tj.String("xxh3", 16), "tensor", name);
            tj.String("name", MaxNameLength);
            tj.RejectUnknown();
            long expected = TensorSize.Bytes(format, shape);
            if (expected < 0)
                throw tensorError($"shape [{string.Join(", ", shape)}] is not valid for format {formatName}");
            if (expected != length)
                throw tensorError($"length {length} does not match {formatName} [{string.Join(", ", shape)}], which needs {expected} bytes");
            if (offset % Alignment != 0) throw tensorError($"offset {offset} is not {Alignment}-byte aligned");
            if (length > dataLength - offset)
                throw tensorError($"bytes [{offset}, +{length}) run past the data section ({dataLength} bytes; truncated?)");
            list.Add(new PqTensor(this, name, format, shape, offset, length, hash, _base + DataOffset + offset));
            index++;
        }
        return list;
    }

    private void CheckNoOverlap(List<PqTensor> tensors, long dataLength)
    {
        var spans = new List<(long start, long end,
            string what)>(tensors.Count + 1) { (_tokenizerOffset, _tokenizerOffset + _tokenizerLength,
            "the tokenizer") };
        foreach (var t in tensors) spans.Add((t.Offset, t.Offset + t.Length, $"tensor '{t.Name}'"));
        spans.Sort((a, b) => a.start.CompareTo(b.start));
        for (int i = 1; i < spans.Count; i++)
            if (spans[i].start < spans[i - 1].end)
                throw Error($"{spans[i].what} overlaps {spans[i - 1].what} in the data section");
    }

    /// <summary>Re-hashes every tensor and throws on the first mismatch.</summary>
    public void VerifyChecksums()
    {
        foreach (var t in Tensors)
            if (XxHash3.HashToUInt64(t.Data) != t.Checksum)
                throw new PqFormatException(Path, t.Name, "checksum mismatch (the file is corrupt)");
    }

    // A negative, infinite or NaN scale would decode to silent garbage: refuse it at load (the scales are a tiny part
    // of a tensor).
    private void CheckScales()
    {
        foreach (var t in Tensors)
        {
            if (!WeightFormats.IsPacked(t.Format)) continue;
            var layout = new PackedLayout(t.Format, t.Shape[0], t.Shape[1]);
            var scales = System.Runtime.InteropServices.MemoryMarshal.Cast<byte,
                float>(t.Data[(int)layout.CodeBytes..]);
            for (int i = 0; i < scales.Length; i++)
                if (!float.IsFinite(scales[i]) || scales[i] < 0)
                    throw new PqFormatException(Path, t.Name,
                        $"scale #{i} is {scales[i]}, not a finite non-negative number");
        }
    }

    public PqTensor this[string name] => TryGetTensor(name, out var t) ? t
        : throw new PqFormatException(Path, name, "is missing from the file");

    public bool TryGetTensor(string name, out PqTensor tensor) => _byName.TryGetValue(name, out tensor!);

    private ulong ParseHash(string hex, string what, string? tensor)
    {
        if (hex.Length != 16
            || !ulong.TryParse(hex, System.Globalization.NumberStyles.AllowHexSpecifier, null, out ulong v))
            throw new PqFormatException(Path, tensor, $"{what} checksum '{hex}' is not 16 hex digits");
        return v;
    }

    private PqFormatException Error(string problem) => new(Path, null, problem);

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_base == null, this);

    public void Dispose()
    {
        if (_base != null)
        {
            if (_resident != null) ResidentMemory.Free(_resident);
            else _view!.SafeMemoryMappedViewHandle.ReleasePointer();
            _base = null;
        }
        _view?.Dispose();
        _map?.Dispose();
    }
}
