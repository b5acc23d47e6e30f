using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using ParetoQ.Runtime.Interchange;

namespace ParetoQ.TestModels;

/// <summary>
/// Writes <c>pytorch_model.bin</c> files the way <c>torch.save(state_dict)</c> lays them out: a zip of stored members
/// <c>archive/data.pkl</c> (a protocol-2 pickle of an OrderedDict of <c>_rebuild_tensor_v2</c> calls over persistent
/// storage ids), <c>archive/data/KEY</c> per storage, <c>archive/byteorder</c> and <c>archive/version</c>.
/// Tensors named in <c>shareWith</c> reuse another tensor's storage, as tied weights do. The pickle and zip builders
/// are public so tests can write hostile variants.
/// </summary>
public static class TorchCheckpointWriter
{
    public static void Write(string path, IEnumerable<SafetensorsWriter.Tensor> tensors, IReadOnlyDictionary<string,
        string>? shareWith = null, bool zip64 = false)
    {
        var list = tensors.ToList();
        var keys = new Dictionary<string, string>(StringComparer.Ordinal);
        var members = new List<(string, byte[])>();
        foreach (var t in list)
        {
            if (shareWith?.TryGetValue(t.Name, out var other) == true) { keys[t.Name] = keys[other]; continue; }
            keys[t.Name] = members.Count.ToString();
            members.Add(($"archive/data/{members.Count}", SafetensorsWriter.Encode(t.DType, t.Values)));
        }
        var pickle = StateDictPickle(list.Select(t
            => (t.Name, t.DType, keys[t.Name], list.First(s => keys[s.Name] == keys[t.Name]).Values.LongLength,
            t.Shape)));
        members.Insert(0, ("archive/data.pkl", pickle));
        members.Add(("archive/byteorder", "little"u8.ToArray()));
        members.Add(("archive/version", "3\n"u8.ToArray()));
        File.WriteAllBytes(path, Zip(members, zip64));
    }

    /// <summary>The pickle torch.save writes for a state dict (protocol 2, memoized globals, an empty _metadata
    /// BUILD).</summary>
    public static byte[] StateDictPickle(IEnumerable<(string Name, SourceDType DType, string Key, long StorageElements,
        long[] Shape)> tensors)
    {
        var p = new PickleBuilder();
        p.Proto(2).Global("collections", "OrderedDict").Op(')').Op('R').Put().Op('(');
        foreach (var t in tensors)
        {
            p.Unicode(t.Name).Global("torch._utils", "_rebuild_tensor_v2").Op('(')
             .Op('(').Unicode("storage").Global("torch",
                 t.DType switch { SourceDType.F32 => "FloatStorage", SourceDType.F16 => "HalfStorage", _
                 => "BFloat16Storage" })
             .Unicode(t.Key).Unicode("cpu").Int(t.StorageElements).Op('t').Op('Q')
             .Int(0).Tuple(t.Shape).Tuple(Strides(t.Shape)).Op(0x89)
             .Global("collections", "OrderedDict").Op(')').Op('R')
             .Op('t').Op('R');
        }
        p.Op('u').Op('}').Op('b').Op('.');
        return p.ToArray();
    }

    public static long[] Strides(long[] shape)
    {
        var s = new long[shape.Length];
        long acc = 1;
        for (int d = shape.Length - 1; d >= 0; d--) { s[d] = acc; acc *= shape[d]; }
        return s;
    }

    /// <summary>A zip of stored members; with <paramref name="zip64"/> every size and offset goes through ZIP64
    /// fields.</summary>
    public static byte[] Zip(IEnumerable<(string Name, byte[] Data)> members, bool zip64 = false)
    {
        var file = new MemoryStream();
        var central = new MemoryStream();
        int count = 0;
        foreach (var (name, data) in members)
        {
            byte[] nameBytes = Encoding.UTF8.GetBytes(name);
            long local = file.Length;
            uint crc = Crc32.HashToUInt32(data);
            // Local header; torch pads the extra field so data starts on a 64-byte boundary.
            int pad = (int)((64 - (local + 30 + nameBytes.Length + 4) % 64) % 64);
            var lh = new byte[30];
            BinaryPrimitives.WriteUInt32LittleEndian(lh, 0x04034b50);
            BinaryPrimitives.WriteUInt16LittleEndian(lh.AsSpan(4), 20);
            BinaryPrimitives.WriteUInt32LittleEndian(lh.AsSpan(14), crc);
            BinaryPrimitives.WriteUInt32LittleEndian(lh.AsSpan(18), (uint)data.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(lh.AsSpan(22), (uint)data.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(lh.AsSpan(26), (ushort)nameBytes.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(lh.AsSpan(28), (ushort)(4 + pad));
            file.Write(lh);
            file.Write(nameBytes);
            file.Write([0x46, 0x42, (byte)pad, 0]); // "FB" padding field, as torch writes
            file.Write(new byte[pad]);
            file.Write(data);

            var extra = new MemoryStream();
            if (zip64)
            {
                extra.Write([1, 0, 24, 0]);
                var v = new byte[8];
                foreach (long x in new[] { (long)data.Length, data.Length,
                    local }) { BinaryPrimitives.WriteInt64LittleEndian(v, x); extra.Write(v); }
            }
            var ch = new byte[46];
            BinaryPrimitives.WriteUInt32LittleEndian(ch, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(ch.AsSpan(4), 45);
            BinaryPrimitives.WriteUInt16LittleEndian(ch.AsSpan(6), 20);
            BinaryPrimitives.WriteUInt32LittleEndian(ch.AsSpan(16), crc);
            BinaryPrimitives.WriteUInt32LittleEndian(ch.AsSpan(20), zip64 ? 0xFFFFFFFF : (uint)data.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(ch.AsSpan(24), zip64 ? 0xFFFFFFFF : (uint)data.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(ch.AsSpan(28), (ushort)nameBytes.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(ch.AsSpan(30), (ushort)extra.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(ch.AsSpan(42), zip64 ? 0xFFFFFFFF : (uint)local);
            central.Write(ch);
            central.Write(nameBytes);
            central.Write(extra.ToArray());
            count++;
        }
        long cdOffset = file.Length;
        file.Write(central.ToArray());
        if (zip64)
        {
            long recordOffset = file.Length;
            var rec = new byte[56];
            BinaryPrimitives.WriteUInt32LittleEndian(rec, 0x06064b50);
            BinaryPrimitives.WriteInt64LittleEndian(rec.AsSpan(4), 44);
            BinaryPrimitives.WriteInt64LittleEndian(rec.AsSpan(24), count);
            BinaryPrimitives.WriteInt64LittleEndian(rec.AsSpan(32), count);
            BinaryPrimitives.WriteInt64LittleEndian(rec.AsSpan(40), central.Length);
            BinaryPrimitives.WriteInt64LittleEndian(rec.AsSpan(48), cdOffset);
            file.Write(rec);
            var loc = new byte[20];
            BinaryPrimitives.WriteUInt32LittleEndian(loc, 0x07064b50);
            BinaryPrimitives.WriteInt64LittleEndian(loc.AsSpan(8), recordOffset);
            BinaryPrimitives.WriteUInt32LittleEndian(loc.AsSpan(16), 1);
            file.Write(loc);
        }
        var end = new byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(end, 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(8), zip64 ? (ushort)0xFFFF : (ushort)count);
        BinaryPrimitives.WriteUInt16LittleEndian(end.AsSpan(10), zip64 ? (ushort)0xFFFF : (ushort)count);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(12), zip64 ? 0xFFFFFFFF : (uint)central.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(end.AsSpan(16), zip64 ? 0xFFFFFFFF : (uint)cdOffset);
        file.Write(end);
        return file.ToArray();
    }
}

/// <summary>Emits pickle opcodes; just enough to write state dicts and hostile pickles in tests.</summary>
public sealed class PickleBuilder
{
    private readonly MemoryStream _s = new();
    private int _memo;

    public PickleBuilder Op(char op) => Op((byte)op);

    public PickleBuilder Op(byte op)
    {
        _s.WriteByte(op);
        return this;
    }

    public PickleBuilder Raw(params byte[] bytes)
    {
        _s.Write(bytes);
        return this;
    }

    public PickleBuilder Proto(byte version) => Raw(0x80, version);

    public PickleBuilder Global(string module, string name)
        => Op('c').Raw(Encoding.UTF8.GetBytes($"{module}\n{name}\n")).Put();

    /// <summary>BINPUT of the top of the stack into the next memo slot.</summary>
    public PickleBuilder Put() => Raw((byte)'q', (byte)_memo++);

    public PickleBuilder Unicode(string s)
    {
        byte[] b = Encoding.UTF8.GetBytes(s);
        Span<byte> n = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(n, (uint)b.Length);
        return Op('X').Raw(n.ToArray()).Raw(b);
    }

    public PickleBuilder Int(long v)
    {
        if (v is >= 0 and < 256) return Raw((byte)'K', (byte)v);
        if (v is >= int.MinValue and <= int.MaxValue)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(b, (int)v);
            return Op('J').Raw(b);
        }
        var l = new byte[8];
        BinaryPrimitives.WriteInt64LittleEndian(l, v);
        return Raw(0x8a, 8).Raw(l);
    }

    public PickleBuilder Tuple(long[] values)
    {
        Op('(');
        foreach (long v in values) Int(v);
        return Op('t');
    }

    public byte[] ToArray() => _s.ToArray();
}
