using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text.Json;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Runtime.Format;

/// <summary>
/// Builds a .pq file: config JSON, tokenizer, provenance and tensors in, one validated file out. The file is written
/// under a temporary name and renamed into place, so an interrupted write never leaves a half-file under the final
/// name.
/// </summary>
public sealed class PqWriter
{
    private readonly byte[] _configJson;
    private readonly List<(string Name, WeightFormat Format, int[] Shape, byte[] Data)> _tensors = [];
    private readonly HashSet<string> _names = new(StringComparer.Ordinal);
    private (PqTokenizerInfo Info, byte[] Bytes)? _tokenizer;

    /// <param name="configJson">The model config as a UTF-8 JSON object (see docs/FORMAT.md); the model loader
    /// validates its fields.</param>
    public PqWriter(ReadOnlySpan<byte> configJson, PqProvenance provenance)
    {
        using (var doc = JsonDocument.Parse(configJson.ToArray()))
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw new ArgumentException("config must be a JSON object", nameof(configJson));
        _configJson = configJson.ToArray();
        Provenance = provenance;
    }

    public PqProvenance Provenance { get; set; }

    public void SetTokenizer(PqTokenizerInfo info, byte[] bytes)
    {
        if (!TokenizerKinds.IsKnown(info.Kind)) throw new ArgumentException($"unknown tokenizer kind '{info.Kind}'",
            nameof(info));
        if (bytes.Length == 0) throw new ArgumentException("tokenizer bytes are empty", nameof(bytes));
        _tokenizer = (info, bytes);
    }

    /// <summary>Adds a tensor whose bytes are already in <paramref name="format"/>'s layout (see
    /// <see cref="WeightPacker"/>, <see cref="FloatCodec"/>).</summary>
    public void AddTensor(string name, WeightFormat format, int[] shape, byte[] data)
    {
        if (string.IsNullOrEmpty(name)
            || name.Length > PqFile.MaxNameLength) throw new ArgumentException($"tensor name '{name}' is empty or too long", nameof(name));
        if (_names.Contains(name)) throw new ArgumentException($"tensor '{name}' added twice", nameof(name));
        long expected = TensorSize.Bytes(format, shape);
        if (expected < 0) throw new ArgumentException($"tensor '{name}': shape [{string.Join(", ", shape)}] is not valid for {WeightFormats.Name(format)}", nameof(shape));
        if (expected != data.Length) throw new ArgumentException($"tensor '{name}': {data.Length} bytes, but {WeightFormats.Name(format)} [{string.Join(", ", shape)}] needs {expected}", nameof(data));
        _names.Add(name);
        _tensors.Add((name, format, (int[])shape.Clone(), data));
    }

    /// <summary>Convenience: stores fp32 values in a float format.</summary>
    public void AddFloatTensor(string name, WeightFormat format, int[] shape, ReadOnlySpan<float> values) =>
        AddTensor(name, format, shape, FloatCodec.Encode(format, values));

    /// <summary>Convenience: packs quantized codes and scales.</summary>
    public void AddQuantizedTensor(string name, QuantizedMatrix matrix) =>
        AddTensor(name, matrix.Format, [matrix.Rows, matrix.Cols], WeightPacker.Pack(matrix));

    /// <summary>Writes the file. An existing file at <paramref name="path"/> is replaced only when
    /// <paramref name="overwrite"/> is true.</summary>
    public void Write(string path, bool overwrite = false)
    {
        if (_tokenizer is not { } tokenizer) throw new InvalidOperationException("a .pq file needs a tokenizer: call SetTokenizer first");
        // Data section layout: tokenizer first, then tensors in insertion order, each 64-byte aligned.
        long cursor = 0;
        long tokOffset = cursor;
        cursor = Align(cursor + tokenizer.Bytes.Length);
        var offsets = new long[_tensors.Count];
        for (int i = 0; i < _tensors.Count; i++)
        {
            offsets[i] = cursor;
            cursor = Align(cursor + _tensors[i].Data.Length);
        }
        long dataLength = cursor;

        byte[] meta = BuildMetadata(tokenizer.Info, tokenizer.Bytes, tokOffset, offsets);
        long dataOffset = Align(PqFile.HeaderSize + meta.Length);

        var header = new byte[PqFile.HeaderSize];
        PqFile.Magic.CopyTo(header);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), PqFile.Version);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), PqFile.HeaderSize);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(16), (ulong)meta.Length);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(24), (ulong)dataOffset);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(32), (ulong)dataLength);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(40), XxHash3.HashToUInt64(meta));
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(56), XxHash3.HashToUInt64(header.AsSpan(0, 56)));

        AtomicFile.Write(path, overwrite, fs =>
        {
            fs.Write(header);
            fs.Write(meta);
            AtomicFile.ZeroFill(fs, dataOffset);
            fs.Write(tokenizer.Bytes);
            for (int i = 0; i < _tensors.Count; i++)
            {
                AtomicFile.ZeroFill(fs, dataOffset + offsets[i]);
                fs.Write(_tensors[i].Data);
            }
            AtomicFile.ZeroFill(fs, dataOffset + dataLength);
        },
        // The reader is the definition of a valid file: never rename into place anything it would refuse.
        check: temp => { using (PqFile.Open(temp)) { } });
    }

    private byte[] BuildMetadata(PqTokenizerInfo tok, byte[] tokBytes, long tokOffset, long[] offsets)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WritePropertyName("config");
            w.WriteRawValue(_configJson);

            w.WriteStartObject("provenance");
            w.WriteString("source", WithoutDirectories(Provenance.Source));
            w.WriteString("bits", Provenance.Bits);
            w.WriteString("tool", Provenance.Tool);
            w.WriteStartObject("settings");
            foreach (var kv in Provenance.Settings.OrderBy(kv => kv.Key, StringComparer.Ordinal)) w.WriteString(kv.Key,
                WithoutDirectories(kv.Value));
            w.WriteEndObject();
            w.WriteEndObject();

            w.WriteStartObject("tokenizer");
            w.WriteString("kind", tok.Kind);
            w.WriteNumber("offset", tokOffset);
            w.WriteNumber("length", tokBytes.Length);
            w.WriteString("xxh3", Hex(XxHash3.HashToUInt64(tokBytes)));
            w.WriteNumber("bos_id", tok.BosId);
            w.WriteNumber("pad_id", tok.PadId);
            w.WriteStartArray("eos_ids");
            foreach (int id in tok.EosIds) w.WriteNumberValue(id);
            w.WriteEndArray();
            w.WriteStartObject("special_tokens");
            foreach (var kv in tok.SpecialTokens.OrderBy(kv => kv.Value)) w.WriteNumber(kv.Key, kv.Value);
            w.WriteEndObject();
            if (tok.ChatTemplate is not null) w.WriteString("chat_template", tok.ChatTemplate);
            w.WriteEndObject();

            w.WriteStartArray("tensors");
            for (int i = 0; i < _tensors.Count; i++)
            {
                var t = _tensors[i];
                w.WriteStartObject();
                w.WriteString("name", t.Name);
                w.WriteString("format", WeightFormats.Name(t.Format));
                w.WriteStartArray("shape");
                foreach (int d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteNumber("offset", offsets[i]);
                w.WriteNumber("length", t.Data.Length);
                w.WriteString("xxh3", Hex(XxHash3.HashToUInt64(t.Data)));
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }

    private static string Hex(ulong v) => v.ToString("x16");

    private static long Align(long x) => (x + PqFile.Alignment - 1) / PqFile.Alignment * PqFile.Alignment;

    /// <summary>An absolute path as its last component: a shipped file must not carry the directories of the machine
    /// that built it (user names, build trees).</summary>
    internal static string WithoutDirectories(string value) =>
        Path.IsPathFullyQualified(value) ? Path.GetFileName(value.TrimEnd('/', '\\')) : value;
}
