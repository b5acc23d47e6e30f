using System.Buffers.Binary;
using System.Text;

namespace ParetoQ.Runtime.Interchange;

/// <summary>A storage a PyTorch checkpoint refers to: zip member <c>data/{Key}</c> holding <see cref="Elements"/>
/// values.</summary>
internal sealed record TorchStorage(SourceDType DType, string Key, long Elements);

/// <summary>A tensor rebuilt from a pickle: a strided view of a storage.</summary>
internal sealed record TorchTensor(TorchStorage Storage, long StorageOffset, long[] Shape, long[] Stride);

/// <summary>
/// A restricted unpickler for the <c>data.pkl</c> of a PyTorch zip checkpoint. It interprets only the opcodes that
/// <c>torch.save</c> emits for a state dict and builds plain data; it never imports or calls anything. The only
/// globals it accepts are the tensor rebuild functions, the three float storage classes and
/// <c>collections.OrderedDict</c>; any other global or opcode is refused by name. Memory is bounded: lengths are
/// checked against the bytes left, and the objects built and the memo entries stored are counted against limits far
/// above what a state dict needs (a one-byte MEMOIZE would otherwise cost some 70 bytes of memo each).
/// </summary>
internal sealed class TorchPickle
{
    public const int MaxPickleBytes = 64 << 20;
    /// <summary>Objects built: a state dict takes about 20 per tensor.</summary>
    public const int MaxObjects = 1 << 20;
    public const int MaxMemoEntries = 1 << 18;

    private static readonly Dictionary<string, SourceDType> StorageTypes = new(StringComparer.Ordinal)
    {
        ["torch.FloatStorage"] = SourceDType.F32,
        ["torch.HalfStorage"] = SourceDType.F16,
        ["torch.BFloat16Storage"] = SourceDType.BF16,
    };

    private const string OrderedDict = "collections.OrderedDict";
    private const string RebuildTensor = "torch._utils._rebuild_tensor_v2";
    private const string RebuildParameter = "torch._utils._rebuild_parameter";

    private sealed record Global(string Name);
    private sealed class Mark;
    private sealed class PickleDict : List<KeyValuePair<object?, object?>>;
    private static readonly Mark MarkObject = new();

    private readonly byte[] _data;
    private readonly string _path;
    private int _pos;
    private readonly List<object?> _stack = [];
    private readonly Dictionary<long, object?> _memo = [];
    private int _objects;

    private TorchPickle(byte[] data, string path)
    {
        _data = data;
        _path = path;
    }

    /// <summary>Reads a pickled state dict: parameter name → tensor, in the pickle's order.</summary>
    public static List<(string Name, TorchTensor Tensor)> ReadStateDict(byte[] pickle, string path)
    {
        if (pickle.Length > MaxPickleBytes) throw new CheckpointException(path, null,
            $"data.pkl is {pickle.Length} bytes, more than the {MaxPickleBytes} a state dict needs");
        object? root = new TorchPickle(pickle, path).Run();
        if (root is not PickleDict dict) throw new CheckpointException(path, null,
            $"the pickle holds {Describe(root)}, not a state dict (a mapping of names to tensors)");
        var result = new List<(string, TorchTensor)>(dict.Count);
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, value) in dict)
        {
            if (key is not string name) throw new CheckpointException(path, null,
                $"a state dict key is {Describe(key)}, not a string");
            if (value is not TorchTensor tensor) throw new CheckpointException(path, name,
                $"the state dict maps it to {Describe(value)}, not a tensor (nested checkpoints are not supported)");
            if (!names.Add(name)) throw new CheckpointException(path, name, "appears twice in the state dict");
            result.Add((name, tensor));
        }
        return result;
    }

    private CheckpointException Error(string problem) => new(_path, null, $"data.pkl at byte {_pos}: {problem}");

    private object? Run()
    {
        while (true)
        {
            byte op = Byte();
            switch (op)
            {
                case 0x80: // PROTO
                    if (Byte() is < 2 or > 5) throw Error("unsupported pickle protocol");
                    break;
                case 0x95: // FRAME: a length prefix for buffering, nothing to build
                    Take(8);
                    break;
                case (byte)'}': Push(new PickleDict()); break;                 // EMPTY_DICT
                case (byte)']': Push(new List<object?>()); break;              // EMPTY_LIST
                case (byte)')': Push(Array.Empty<object?>()); break;           // EMPTY_TUPLE
                case (byte)'(': Push(MarkObject); break;                       // MARK
                case (byte)'N': Push(null); break;                             // NONE
                case 0x88: Push(true); break;                                  // NEWTRUE
                case 0x89: Push(false); break;                                 // NEWFALSE
                case (byte)'K': Push((long)Byte()); break;                     // BININT1
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break; // BININT2
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;  // BININT
                case 0x8a: Push(Long1()); break;                               // LONG1
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break;          // BINFLOAT
                case (byte)'X': Push(Utf8(Length(4))); break;                  // BINUNICODE
                case 0x8c: Push(Utf8(Byte())); break;                          // SHORT_BINUNICODE
                case (byte)'q': Remember(Byte()); break;                       // BINPUT
                case (byte)'r': Remember(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))); break; // LONG_BINPUT
                case 0x94: Remember(_memo.Count); break;                       // MEMOIZE
                case (byte)'h': Push(Memo(Byte())); break;                     // BINGET
                case (byte)'j': Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // LONG_BINGET
                case (byte)'t': Push(PopToMark().ToArray()); break;            // TUPLE
                case 0x85: Push(new[] { Pop() }); break;                        // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); Push(new[] { a, b }); break; }              // TUPLE2
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new[] { a, b, c }); break; } // TUPLE3
                case (byte)'c': Push(CheckGlobal($"{Line()}.{Line()}")); break; // GLOBAL
                // STACK_GLOBAL
                case 0x93: { var name = Pop(); var module = Pop(); Push(CheckGlobal($"{AsString(module)}.{AsString(name)}")); break; }
                case (byte)'Q': Push(PersistentLoad(Pop())); break;            // BINPERSID
                // REDUCE
                case (byte)'R': { var args = Pop(); var callable = Pop(); Push(Reduce(callable, args)); break; }
                case (byte)'s': { var v = Pop(); var k = Pop(); AsDict(Peek()).Add(new(k, v)); break; }  // SETITEM
                case (byte)'u':                                                // SETITEMS
                {
                    var items = PopToMark();
                    if (items.Count % 2 != 0) throw Error("SETITEMS with an odd number of items");
                    var dict = AsDict(Peek());
                    for (int i = 0; i < items.Count; i += 2) dict.Add(new(items[i], items[i + 1]));
                    break;
                }
                case (byte)'a': { var v = Pop(); AsList(Peek()).Add(v); break; } // APPEND
                case (byte)'e': { var items = PopToMark(); AsList(Peek()).AddRange(items); break; } // APPENDS
                case (byte)'b':                                                // BUILD
                {
                    var state = Pop();
                    // OrderedDict state (a state dict's _metadata attribute) only annotates: keep the mapping, drop the
                    // state.
                    if (Peek() is not PickleDict
                        || state is not (PickleDict
                        or null)) throw Error($"BUILD of {Describe(Peek())} with {Describe(state)} is not allowed");
                    break;
                }
                case (byte)'.':                                                // STOP
                    if (_stack.Count != 1) throw Error($"STOP with {_stack.Count} objects on the stack");
                    return _stack[0];
                default:
                    throw Error($"opcode 0x{op:x2} ('{(op is >= 0x20 and < 0x7f ? (char)op : '?')}') is not allowed in a state dict pickle");
            }
        }
    }

    private object CheckGlobal(string name)
    {
        if (name is OrderedDict or RebuildTensor or RebuildParameter
            || StorageTypes.ContainsKey(name)) return new Global(name);
        throw Error($"global '{name}' is not allowed (only tensors, float storages and OrderedDicts are rebuilt; nothing is imported or run)");
    }

    private object PersistentLoad(object? pid)
    {
        // torch.save's storage reference: ('storage', storage class, key, location, number of elements).
        if (pid is not object?[] { Length: 5 } t
            || t[0] is not "storage") throw Error($"persistent id {Describe(pid)} is not a storage reference");
        if (t[1] is not Global g
            || !StorageTypes.TryGetValue(g.Name,
            out var dtype)) throw Error($"storage type {Describe(t[1])} is not supported (float32, float16 and bfloat16 are)");
        if (t[2] is not string key || key.Length is 0 or > 64
            || key.Any(ch => !char.IsAsciiLetterOrDigit(ch) && ch != '_'))
            throw Error($"storage key {Describe(t[2])} is not a plain name");
        if (t[3] is not string) throw Error($"storage location {Describe(t[3])} is not a string");
        long elements = AsLong(t[4], "storage size");
        if (elements < 0) throw Error($"storage size {elements} is negative");
        return new TorchStorage(dtype, key, elements);
    }

    private object Reduce(object? callable, object? args)
    {
        if (callable is not Global g) throw Error($"REDUCE of {Describe(callable)}, which is not an allowed global");
        if (args is not object?[] a) throw Error($"REDUCE arguments are {Describe(args)}, not a tuple");
        switch (g.Name)
        {
            case OrderedDict when a.Length == 0:
                return new PickleDict();
            case RebuildTensor when a.Length is 6 or 7:
            {
                // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
                if (a[0] is not TorchStorage storage) throw Error($"_rebuild_tensor_v2 storage is {Describe(a[0])}");
                long offset = AsLong(a[1], "storage offset");
                long[] shape = AsLongs(a[2], "size"), stride = AsLongs(a[3], "stride");
                if (shape.Length != stride.Length)
                    throw Error($"size has {shape.Length} dimensions but stride has {stride.Length}");
                if (a[5] is not PickleDict { Count: 0 })
                    throw Error("a tensor with backward hooks is not a plain state dict entry");
                return new TorchTensor(storage, offset, shape, stride);
            }
            case RebuildParameter when a.Length == 3 && a[0] is TorchTensor tensor:
                if (a[2] is not PickleDict { Count: 0 })
                    throw Error("a parameter with backward hooks is not a plain state dict entry");
                return tensor;
            default:
                throw Error($"{g.Name} called with {a.Length} arguments is not a form torch.save writes");
        }
    }

    private byte Byte() => _pos < _data.Length ? _data[_pos++]
        : throw Error("the pickle ends without STOP (truncated)");

    private ReadOnlySpan<byte> Take(long n)
    {
        if (n < 0 || n > _data.Length - _pos) throw Error($"a {n}-byte field runs past the end of the pickle");
        var s = _data.AsSpan(_pos, (int)n);
        _pos += (int)n;
        return s;
    }

    private long Length(int bytes) => bytes == 4 ? BinaryPrimitives.ReadUInt32LittleEndian(Take(4))
        : (long)BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    private string Utf8(long length)
    {
        var bytes = Take(length);
        if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw Error("a string is not valid UTF-8");
        return Encoding.UTF8.GetString(bytes);
    }

    private string Line()
    {
        int end = Array.IndexOf(_data, (byte)'\n', _pos, Math.Min(256, _data.Length - _pos));
        if (end < 0) throw Error("GLOBAL name is not terminated within 256 bytes");
        string s = Utf8(end - _pos);
        _pos++;
        return s;
    }

    private long Long1()
    {
        int n = Byte();
        if (n > 8) throw Error($"a {n}-byte integer is larger than any size or offset");
        var bytes = Take(n);
        long v = 0;
        for (int i = n - 1; i >= 0; i--) v = (v << 8) | bytes[i];
        if (n > 0 && n < 8 && (bytes[n - 1] & 0x80) != 0) v -= 1L << (8 * n); // two's complement sign
        return v;
    }

    private void Push(object? o)
    {
        if (++_objects > MaxObjects)
            throw Error($"the pickle builds more than {MaxObjects} objects, far more than a state dict needs");
        _stack.Add(o);
    }

    private void Remember(long slot)
    {
        if (_memo.Count >= MaxMemoEntries && !_memo.ContainsKey(slot))
            throw Error($"the pickle stores more than {MaxMemoEntries} memo entries, far more than a state dict needs");
        _memo[slot] = Peek();
    }

    private object? Peek() => _stack.Count > 0 && _stack[^1] is not Mark ? _stack[^1] : throw Error("stack underflow");

    private object? Pop()
    {
        object? o = Peek();
        _stack.RemoveAt(_stack.Count - 1);
        return o;
    }

    private List<object?> PopToMark()
    {
        int mark = _stack.FindLastIndex(o => o is Mark);
        if (mark < 0) throw Error("no MARK on the stack");
        var items = _stack.GetRange(mark + 1, _stack.Count - mark - 1);
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private object? Memo(long index) => _memo.TryGetValue(index, out var v) ? v
        : throw Error($"memo slot {index} was never stored");

    private PickleDict AsDict(object? o) => o as PickleDict ?? throw Error($"SETITEM on {Describe(o)}, not a dict");

    private List<object?> AsList(object? o) => o as List<object?>
        ?? throw Error($"APPEND on {Describe(o)}, not a list");

    private string AsString(object? o) => o as string ?? throw Error($"expected a string, found {Describe(o)}");

    private long AsLong(object? o, string what) => o is long v ? v
        : throw Error($"{what} is {Describe(o)}, not an integer");

    private long[] AsLongs(object? o, string what) =>
        o is object?[] { Length: <= 8 } t ? t.Select(e => AsLong(e, what)).ToArray()
            : throw Error($"{what} is {Describe(o)}, not a tuple of at most 8 integers");

    private static string Describe(object? o) => o switch
    {
        null => "None",
        string s => $"the string '{(s.Length > 40 ? s[..40] + "…" : s)}'",
        long v => $"the integer {v}",
        bool b => b ? "True" : "False",
        double => "a float",
        object?[] t => $"a {t.Length}-tuple",
        List<object?> => "a list",
        PickleDict => "a dict",
        Global g => $"the global {g.Name}",
        TorchStorage => "a storage",
        TorchTensor => "a tensor",
        _ => o.GetType().Name,
    };
}
