using Microsoft.Win32.SafeHandles;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace ParetoQ.Runtime.Interchange;

/// <summary>One stored (uncompressed) member of a zip archive: where its bytes lie in the file.</summary>
internal sealed record ZipEntry(string Name, long DataOffset, long Length, uint Crc32);

/// <summary>
/// The central directory of a zip archive, read strictly, ZIP64 included: PyTorch's <c>torch.save</c> writes a zip of
/// stored members (no compression), so each member's bytes can be read in place at a known offset. Anything else that
/// zip allows (compression, encryption, multiple disks, data past the end) is refused with a message that says so.
/// </summary>
internal static class ZipDirectory
{
    private const uint EndSignature = 0x06054b50, Zip64EndSignature = 0x06064b50, Zip64LocatorSignature = 0x07064b50;
    private const uint CentralSignature = 0x02014b50, LocalSignature = 0x04034b50;
    private const int MaxEntries = 1 << 20;
    private const long MaxCentralDirectoryBytes = 256 << 20;

    public static IReadOnlyList<ZipEntry> Read(SafeFileHandle handle, string path, long fileLength)
    {
        CheckpointException Error(string problem) => new(path, null, problem);

        // The end record sits in the last 22 + 65535 bytes (its comment is at most 65535 bytes).
        int tailLength = (int)Math.Min(fileLength, 22 + 65535);
        var tail = new byte[tailLength];
        ReadExactly(handle, path, tail, fileLength - tailLength);
        int end = -1;
        for (int i = tailLength - 22; i >= 0; i--)
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) == EndSignature
                && i + 22 + BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(i + 20)) == tailLength)
            {
                end = i;
                break;
            }
        if (end < 0) throw Error("no zip end-of-central-directory record (not a zip archive, or truncated)");
        var eocd = tail.AsSpan(end);
        long endOffset = fileLength - tailLength + end;
        if (BinaryPrimitives.ReadUInt16LittleEndian(eocd[4..]) != 0
            || BinaryPrimitives.ReadUInt16LittleEndian(eocd[6..]) != 0)
            throw Error("multi-disk zip archives are not supported");
        long entries = BinaryPrimitives.ReadUInt16LittleEndian(eocd[10..]);
        long cdSize = BinaryPrimitives.ReadUInt32LittleEndian(eocd[12..]);
        long cdOffset = BinaryPrimitives.ReadUInt32LittleEndian(eocd[16..]);
        if (entries == 0xFFFF || cdSize == 0xFFFFFFFF || cdOffset == 0xFFFFFFFF)
        {
            if (endOffset < 20) throw Error("the ZIP64 locator is missing");
            var locator = new byte[20];
            ReadExactly(handle, path, locator, endOffset - 20);
            if (BinaryPrimitives.ReadUInt32LittleEndian(locator) != Zip64LocatorSignature) throw Error("the ZIP64 locator is missing");
            long recordOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(locator.AsSpan(8));
            if (recordOffset < 0
                || recordOffset > endOffset - 20 - 56) throw Error($"the ZIP64 end record offset {recordOffset} is outside the file");
            var record = new byte[56];
            ReadExactly(handle, path, record, recordOffset);
            if (BinaryPrimitives.ReadUInt32LittleEndian(record) != Zip64EndSignature) throw Error("the ZIP64 end record is missing");
            entries = (long)BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(32));
            cdSize = (long)BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(40));
            cdOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(48));
            endOffset = recordOffset;
        }
        if (entries < 0 || entries > MaxEntries) throw Error($"{entries} zip members (at most {MaxEntries} accepted)");
        if (cdSize < 0 || cdSize > MaxCentralDirectoryBytes || cdOffset < 0 || cdOffset > endOffset - cdSize)
            throw Error($"the central directory (offset {cdOffset}, {cdSize} bytes) does not lie inside the file");

        // Each entry takes at least 46 bytes of the directory: a count the directory cannot hold is refused before
        // anything is sized by it.
        if (entries > cdSize / 46) throw Error($"{entries} zip members cannot fit a central directory of {cdSize} bytes");
        var cd = new byte[cdSize];
        ReadExactly(handle, path, cd, cdOffset);
        var result = new List<ZipEntry>((int)entries);
        var names = new HashSet<string>(StringComparer.Ordinal);
        int at = 0;
        for (long n = 0; n < entries; n++)
        {
            if (at + 46 > cd.Length || BinaryPrimitives.ReadUInt32LittleEndian(cd.AsSpan(at)) != CentralSignature)
                throw Error($"central directory entry {n} is damaged");
            var h = cd.AsSpan(at);
            ushort flags = BinaryPrimitives.ReadUInt16LittleEndian(h[8..]),
                method = BinaryPrimitives.ReadUInt16LittleEndian(h[10..]);
            uint crc = BinaryPrimitives.ReadUInt32LittleEndian(h[16..]);
            long compressed = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]),
                size = BinaryPrimitives.ReadUInt32LittleEndian(h[24..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(h[28..]),
                extraLength = BinaryPrimitives.ReadUInt16LittleEndian(h[30..]);
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(h[32..]);
            long local = BinaryPrimitives.ReadUInt32LittleEndian(h[42..]);
            if (at + 46 + nameLength + extraLength + commentLength > cd.Length) throw Error($"central directory entry {n} runs past the directory");
            var nameBytes = h.Slice(46, nameLength);
            if (!System.Text.Unicode.Utf8.IsValid(nameBytes)) throw Error($"the name of zip member {n} is not valid UTF-8");
            string name = Encoding.UTF8.GetString(nameBytes);
            ReadZip64Extra(h.Slice(46 + nameLength, extraLength), ref size, ref compressed, ref local, name, Error);
            at += 46 + nameLength + extraLength + commentLength;

            if ((flags & 1) != 0) throw Error($"zip member '{name}' is encrypted");
            if (method != 0) throw Error($"zip member '{name}' is compressed (method {method}); PyTorch checkpoints store members uncompressed");
            if (compressed != size) throw Error($"zip member '{name}' is stored but its compressed and plain sizes differ");
            if (!names.Add(name)) throw Error($"zip member '{name}' appears twice");
            if (local < 0
                || local > cdOffset - 30) throw Error($"zip member '{name}': local header offset {local} is outside the file");
            var lh = new byte[30];
            ReadExactly(handle, path, lh, local);
            if (BinaryPrimitives.ReadUInt32LittleEndian(lh) != LocalSignature) throw Error($"zip member '{name}': local header is damaged");
            long dataOffset = local + 30 + BinaryPrimitives.ReadUInt16LittleEndian(lh.AsSpan(26)) + BinaryPrimitives.ReadUInt16LittleEndian(lh.AsSpan(28));
            if (dataOffset > cdOffset
                || size > cdOffset - dataOffset) throw Error($"zip member '{name}' ({size} bytes at {dataOffset}) runs into the central directory (truncated or damaged)");
            result.Add(new ZipEntry(name, dataOffset, size, crc));
        }
        if (at != cd.Length) throw Error("the central directory holds more bytes than its entries");
        return result;
    }

    /// <summary>Checks a member's bytes against the CRC-32 the archive records for it.</summary>
    public static void VerifyCrc(SafeFileHandle handle, string path, ZipEntry entry)
    {
        var crc = new Crc32();
        var buffer = new byte[1 << 20];
        for (long done = 0; done < entry.Length;)
        {
            int n = (int)Math.Min(buffer.Length, entry.Length - done);
            ReadExactly(handle, path, buffer.AsSpan(0, n), entry.DataOffset + done);
            crc.Append(buffer.AsSpan(0, n));
            done += n;
        }
        if (crc.GetCurrentHashAsUInt32() != entry.Crc32)
            throw new CheckpointException(path, null,
                $"zip member '{entry.Name}' fails its CRC-32 check (the file is damaged)");
    }

    public static void ReadExactly(SafeFileHandle handle, string path, Span<byte> destination, long offset)
    {
        for (int done = 0; done < destination.Length;)
        {
            int r = RandomAccess.Read(handle, destination[done..], offset + done);
            if (r == 0) throw new CheckpointException(path, null,
                $"the file ended at byte {offset + done} (truncated)");
            done += r;
        }
    }

    // ZIP64 extended information: 8-byte values for each 32-bit field that holds 0xFFFFFFFF, in this order.
    private static void ReadZip64Extra(ReadOnlySpan<byte> extra, ref long size, ref long compressed, ref long local,
        string name, Func<string, CheckpointException> error)
    {
        bool needSize = size == 0xFFFFFFFF, needCompressed = compressed == 0xFFFFFFFF, needLocal = local == 0xFFFFFFFF;
        if (!needSize && !needCompressed && !needLocal) return;
        while (extra.Length >= 4)
        {
            ushort id = BinaryPrimitives.ReadUInt16LittleEndian(extra),
                length = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (4 + length > extra.Length) break;
            if (id == 1)
            {
                var data = extra.Slice(4, length);
                long Next(ref ReadOnlySpan<byte> d)
                {
                    if (d.Length < 8) throw error($"zip member '{name}': the ZIP64 field is too short");
                    long v = (long)BinaryPrimitives.ReadUInt64LittleEndian(d);
                    d = d[8..];
                    return v < 0 ? throw error($"zip member '{name}': a ZIP64 size is out of range") : v;
                }
                if (needSize) size = Next(ref data);
                if (needCompressed) compressed = Next(ref data);
                if (needLocal) local = Next(ref data);
                return;
            }
            extra = extra[(4 + length)..];
        }
        throw error($"zip member '{name}' needs a ZIP64 field but has none");
    }
}
