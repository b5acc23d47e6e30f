using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace ParetoQ.Runtime.Interchange;

/// <summary>One tensor of a GGUF file: ggml's dims (fastest-varying first) and its absolute place in the
/// file.</summary>
public sealed record GgufTensor(string Name, GgmlType Type, long[] Dims, long Offset, long Bytes)
{
    /// <summary>Elements per row (ggml's ne[0]).</summary>
    public long Cols => Dims[0];
    public long Rows => Dims.Skip(1).Aggregate(1L, (a, b) => a * b);
    public long Elements => Cols * Rows;
    public long RowBytes => GgmlTypes.RowBytes(Type, Cols);
}

/// <summary>
/// A GGUF file (versions 2 and 3) read strictly, as the safetensors reader is: every count, length, offset and size is
/// checked against the file before it sizes anything, so a hostile header cannot allocate more than the file holds.
/// Keys must be unique UTF-8; arrays hold scalars or strings (not arrays); tensor names are unique and under 64 bytes,
/// with 1 to 4 dims whose rows are whole blocks; tensor data starts aligned to <c>general.alignment</c> (a power of
/// two, default 32), each tensor sits aligned inside the data section, and no two overlap.
/// </summary>
public sealed class GgufFile : IDisposable
{
    public const int MaxTensors = 1 << 16;
    public const int MaxKeyValues = 1 << 16;
    public const int MaxTensorNameBytes = 63; // ggml's GGML_MAX_NAME, less its terminator
    public const int MaxKeyBytes = ushort.MaxValue; // the GGUF specification's own bound on a key
    public const int MaxStringBytes = 16 << 20;
    private const int DefaultAlignment = 32;

    private readonly SafeFileHandle _handle;

    public string Path { get; }
    public uint Version { get; }
    public long Alignment { get; }
    public long DataOffset { get; }
    /// <summary>Each value as read: long (every integer type; u64 above long's range is refused), double (f32, f64),
    /// bool, string, or an array of one of those (long[], double[], bool[], string[]).</summary>
    public IReadOnlyDictionary<string, object> Metadata { get; }
    public IReadOnlyList<GgufTensor> Tensors { get; }

    private GgufFile(string path, SafeFileHandle handle, uint version, long alignment, long dataOffset,
        Dictionary<string, object> metadata, List<GgufTensor> tensors)
    {
        Path = path;
        _handle = handle;
        Version = version;
        Alignment = alignment;
        DataOffset = dataOffset;
        Metadata = metadata;
        Tensors = tensors;
    }

    public static bool HasMagic(ReadOnlySpan<byte> start) => start.Length >= 4 && start[..4].SequenceEqual("GGUF"u8);

    public static GgufFile Open(string path) => SourceTensorReader.OpenFile(path, handle =>
    {
        var r = new HeaderReader(path, handle);
        if (!HasMagic(r.Bytes(4))) throw r.Error("is not a GGUF file (no GGUF magic)");
        uint version = r.UInt32();
        if (version is not (2 or 3)) throw r.Error(version == 1
            ? "is GGUF version 1, which predates 64-bit counts; convert it with a current llama.cpp"
            : $"has GGUF version {version} (2 and 3 are read)");
        long tensorCount = r.Count("tensor count", MaxTensors);
        long valueCount = r.Count("metadata key/value count", MaxKeyValues);

        var metadata = new Dictionary<string, object>(StringComparer.Ordinal);
        for (long i = 0; i < valueCount; i++)
        {
            string key = r.String("metadata key", MaxKeyBytes);
            if (key.Length == 0) throw r.Error($"metadata key {i} is empty");
            object value = r.Value(key);
            if (!metadata.TryAdd(key, value)) throw r.Error($"metadata key {key} appears twice");
        }
        long alignment = DefaultAlignment;
        if (metadata.TryGetValue("general.alignment", out var a))
        {
            if (a is not long al)
                throw r.Error($"general.alignment is a {GgufTypeName(a)}, not an integer");
            if (al <= 0 || al > 1 << 20 || (al & (al - 1)) != 0)
                throw r.Error($"general.alignment {al} is not a power of two up to 2^20");
            alignment = al;
        }

        var infos = new List<(string Name, GgmlType Type, long[] Dims, long Offset)>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        for (long i = 0; i < tensorCount; i++)
        {
            string name = r.String("tensor name", MaxTensorNameBytes);
            if (name.Length == 0 || !names.Add(name)) throw r.Error(name.Length == 0
                ? $"tensor {i} has an empty name" : $"tensor {name} appears twice");
            uint dimCount = r.UInt32();
            if (dimCount is < 1 or > 4) throw r.Error($"tensor {name} has {dimCount} dims (1 to 4)");
            var dims = new long[dimCount];
            long elements = 1;
            for (int d = 0; d < dimCount; d++)
            {
                ulong dim = r.UInt64();
                if (dim is < 1 or > 1UL << 40) throw r.Error($"tensor {name} has dim {d} = {dim}");
                dims[d] = (long)dim;
                if (elements > (1L << 40) / dims[d]) throw r.Error($"tensor {name} has more than 2^40 elements");
                elements *= dims[d];
            }
            uint typeNumber = r.UInt32();
            if (!Enum.IsDefined(typeof(GgmlType), typeNumber))
                throw r.Error($"tensor {name} has ggml type {GgmlTypes.Name(typeNumber)}, which is not imported " +
                    $"(F32, F16, BF16, Q8_0, Q4_0, Q2_K, TQ1_0 and TQ2_0 are)");
            var type = (GgmlType)typeNumber;
            int block = GgmlTypes.Block(type).Elements;
            if (dims[0] % block != 0)
                throw r.Error($"tensor {name} has rows of {dims[0]} elements, not whole {type} blocks of {block}");
            ulong offset = r.UInt64();
            if (offset % (ulong)alignment != 0 || offset > (ulong)r.Length)
                throw r.Error($"tensor {name} has data offset {offset}, not aligned to {alignment} inside the file");
            infos.Add((name, type, dims, (long)offset));
        }
        long dataOffset = (r.Position + alignment - 1) / alignment * alignment;
        if (dataOffset > r.Length)
            throw r.Error($"ends at byte {r.Length}, before its tensor data (byte {dataOffset})");

        var tensors = new List<GgufTensor>(infos.Count);
        foreach (var (name, type, dims, offset) in infos)
        {
            long bytes = GgmlTypes.RowBytes(type, dims[0]) * dims.Skip(1).Aggregate(1L, (x, y) => x * y);
            if (offset > r.Length - dataOffset || bytes > r.Length - dataOffset - offset)
                throw r.Error($"tensor {name} needs bytes [{dataOffset + offset}, {dataOffset + offset + bytes}), " +
                    $"past the end of the file ({r.Length} bytes; truncated?)");
            tensors.Add(new GgufTensor(name, type, dims, dataOffset + offset, bytes));
        }
        var byOffset = tensors.OrderBy(t => t.Offset).ToList();
        for (int i = 1; i < byOffset.Count; i++)
            if (byOffset[i].Offset < byOffset[i - 1].Offset + byOffset[i - 1].Bytes)
                throw r.Error($"tensors {byOffset[i - 1].Name} and {byOffset[i].Name} overlap");
        return new GgufFile(path, handle, version, alignment, dataOffset, metadata, tensors);
    });

    /// <summary>Bytes [offset, offset + destination.Length) of a tensor's data.</summary>
    public void ReadBytes(GgufTensor tensor, long offset, Span<byte> destination)
    {
        if (offset < 0 || offset > tensor.Bytes - destination.Length)
            throw new ArgumentOutOfRangeException(nameof(offset), $"bytes [{offset}, {offset + destination.Length}) " +
                $"are outside tensor {tensor.Name} of {tensor.Bytes}");
        SourceTensorReader.ReadExactly(_handle, Path, tensor.Name, tensor.Offset + offset, destination);
    }

    public void Dispose() => _handle.Dispose();

    /// <summary>Sequential reads of the header through a buffer; every read is checked against the file's
    /// length.</summary>
    private sealed class HeaderReader(string path, SafeFileHandle handle)
    {
        private const int BufferBytes = 1 << 16;
        private enum ValueType : uint
        {
            UInt8 = 0, Int8, UInt16, Int16, UInt32, Int32, Float32, Bool, String, Array, UInt64, Int64, Float64,
        }

        private readonly byte[] _buffer = new byte[BufferBytes];
        private long _bufferStart;
        private int _bufferLength;
        private readonly UTF8Encoding _utf8 = new(false, throwOnInvalidBytes: true);

        public long Length { get; } = RandomAccess.GetLength(handle);
        public long Position { get; private set; }

        public CheckpointException Error(string problem) => new(path, null, problem);

        public ReadOnlySpan<byte> Bytes(int count)
        {
            if (count > Length - Position)
                throw Error($"ends at byte {Length}, inside its header (reading {count} bytes at byte {Position}; " +
                    $"truncated?)");
            if (count > BufferBytes) throw new ArgumentOutOfRangeException(nameof(count));
            if (Position < _bufferStart || Position + count > _bufferStart + _bufferLength)
            {
                _bufferStart = Position;
                _bufferLength = 0;
                int want = (int)Math.Min(BufferBytes, Length - Position);
                while (_bufferLength < want)
                {
                    int n = RandomAccess.Read(handle, _buffer.AsSpan(_bufferLength, want - _bufferLength),
                        _bufferStart + _bufferLength);
                    if (n == 0) throw Error($"ended at byte {_bufferStart + _bufferLength} while its header was read");
                    _bufferLength += n;
                }
            }
            var span = _buffer.AsSpan((int)(Position - _bufferStart), count);
            Position += count;
            return span;
        }

        public uint UInt32() => BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4));
        public ulong UInt64() => BinaryPrimitives.ReadUInt64LittleEndian(Bytes(8));

        public long Count(string what, long max)
        {
            ulong n = UInt64();
            if (n > (ulong)max) throw Error($"has {what} {n}, over the {max} this reader accepts");
            return (long)n;
        }

        public string String(string what, int maxBytes)
        {
            ulong n = UInt64();
            if (n > (ulong)maxBytes)
                throw Error($"has a {what} of {n} bytes at byte {Position - 8}, over the {maxBytes} allowed");
            if ((long)n > Length - Position)
                throw Error($"ends at byte {Length}, inside a {what} of {n} bytes (truncated?)");
            // Long strings (a chat template) are read in pieces through the buffer.
            var bytes = new byte[n];
            for (int done = 0; done < bytes.Length;)
            {
                int chunk = Math.Min(BufferBytes, bytes.Length - done);
                Bytes(chunk).CopyTo(bytes.AsSpan(done));
                done += chunk;
            }
            try { return _utf8.GetString(bytes); }
            catch (DecoderFallbackException) { throw Error($"has a {what} that is not valid UTF-8 at byte " +
                $"{Position - bytes.Length}"); }
        }

        public object Value(string key)
        {
            uint type = UInt32();
            if (type == (uint)ValueType.Array)
            {
                uint elementType = UInt32();
                ulong count = UInt64();
                if (elementType == (uint)ValueType.Array)
                    throw Error($"metadata {key} is an array of arrays, which no llama model uses");
                if (elementType > (uint)ValueType.Float64)
                    throw Error($"metadata {key} is an array of unknown type {elementType}");
                // Each element takes at least one byte (eight for a string's length), so the count is bounded by
                // what is left of the file before anything is allocated.
                long minBytes = ScalarBytes((ValueType)elementType);
                if (count > (ulong)((Length - Position) / minBytes))
                    throw Error($"metadata {key} claims {count} elements, more than the {Length - Position} bytes " +
                        $"left can hold");
                int n = (int)count;
                switch ((ValueType)elementType)
                {
                    case ValueType.String:
                    {
                        var values = new string[n];
                        for (int i = 0; i < n; i++) values[i] = String($"string in {key}", MaxStringBytes);
                        return values;
                    }
                    case ValueType.Bool:
                    {
                        var values = new bool[n];
                        for (int i = 0; i < n; i++) values[i] = Bool(key);
                        return values;
                    }
                    case ValueType.Float32 or ValueType.Float64:
                    {
                        var values = new double[n];
                        for (int i = 0; i < n; i++) values[i] = (double)Scalar((ValueType)elementType, key);
                        return values;
                    }
                    default:
                    {
                        var values = new long[n];
                        for (int i = 0; i < n; i++) values[i] = (long)Scalar((ValueType)elementType, key);
                        return values;
                    }
                }
            }
            if (type > (uint)ValueType.Float64) throw Error($"metadata {key} has unknown value type {type}");
            return (ValueType)type switch
            {
                ValueType.String => String($"value of {key}", MaxStringBytes),
                ValueType.Bool => Bool(key),
                _ => Scalar((ValueType)type, key),
            };
        }

        private bool Bool(string key)
        {
            byte b = Bytes(1)[0];
            if (b > 1) throw Error($"metadata {key} holds bool byte {b} (0 or 1)");
            return b == 1;
        }

        private object Scalar(ValueType type, string key)
        {
            var b = Bytes((int)ScalarBytes(type));
            switch (type)
            {
                case ValueType.UInt8: return (long)b[0];
                case ValueType.Int8: return (long)(sbyte)b[0];
                case ValueType.UInt16: return (long)BinaryPrimitives.ReadUInt16LittleEndian(b);
                case ValueType.Int16: return (long)BinaryPrimitives.ReadInt16LittleEndian(b);
                case ValueType.UInt32: return (long)BinaryPrimitives.ReadUInt32LittleEndian(b);
                case ValueType.Int32: return (long)BinaryPrimitives.ReadInt32LittleEndian(b);
                case ValueType.Int64: return BinaryPrimitives.ReadInt64LittleEndian(b);
                case ValueType.UInt64:
                {
                    ulong v = BinaryPrimitives.ReadUInt64LittleEndian(b);
                    if (v > long.MaxValue) throw Error($"metadata {key} holds u64 {v}, beyond any count or id");
                    return (long)v;
                }
                case ValueType.Float32: return (double)BinaryPrimitives.ReadSingleLittleEndian(b);
                default: return BinaryPrimitives.ReadDoubleLittleEndian(b);
            }
        }

        private static long ScalarBytes(ValueType type) => type switch
        {
            ValueType.UInt8 or ValueType.Int8 or ValueType.Bool => 1,
            ValueType.UInt16 or ValueType.Int16 => 2,
            ValueType.UInt32 or ValueType.Int32 or ValueType.Float32 => 4,
            _ => 8, // u64, i64, f64, and a string's length
        };
    }

    /// <summary>A metadata value's kind in words, for messages.</summary>
    internal static string GgufTypeName(object value) => value switch
    {
        string => "string",
        bool => "bool",
        long => "integer",
        double => "float",
        Array => "array",
        _ => value.GetType().Name,
    };
}
