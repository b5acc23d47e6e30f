using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using ParetoQ.Runtime.Format;

namespace ParetoQ.TestModels;

/// <summary>Takes a valid .pq file apart and puts it back together with correct checksums, so tests can craft files
/// that are well-sealed but wrong inside.</summary>
public static class PqBytes
{
    public static (string Metadata, byte[] Data) Split(byte[] file)
    {
        long metaLength = (long)BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(16));
        long dataOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(file.AsSpan(24));
        return (Encoding.UTF8.GetString(file, PqFile.HeaderSize, (int)metaLength), file[(int)dataOffset..]);
    }

    /// <summary>Builds a file from metadata text and a data section; <paramref name="editHeader"/> may change header
    /// fields before the header checksum is computed.</summary>
    public static byte[] Build(string metadata, byte[] data, Action<byte[]>? editHeader = null) =>
        Build(Encoding.UTF8.GetBytes(metadata), data, editHeader);

    /// <summary>As above, from the metadata's raw bytes (which may be invalid UTF-8).</summary>
    public static byte[] Build(byte[] meta, byte[] data, Action<byte[]>? editHeader = null)
    {
        long dataOffset = (PqFile.HeaderSize + meta.Length + 63) / 64 * 64;
        var file = new byte[dataOffset + data.Length];
        PqFile.Magic.CopyTo(file);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(8), PqFile.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(12), PqFile.HeaderSize);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(16), (ulong)meta.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(24), (ulong)dataOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(32), (ulong)data.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(40), XxHash3.HashToUInt64(meta));
        editHeader?.Invoke(file);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(56), XxHash3.HashToUInt64(file.AsSpan(0, 56)));
        meta.CopyTo(file, PqFile.HeaderSize);
        data.CopyTo(file, dataOffset);
        return file;
    }

    public static byte[] WithMetadata(byte[] file, Func<string, string> edit)
    {
        var (meta, data) = Split(file);
        string edited = edit(meta);
        if (edited == meta) throw new InvalidOperationException("the edit changed nothing");
        return Build(edited, data);
    }
}
