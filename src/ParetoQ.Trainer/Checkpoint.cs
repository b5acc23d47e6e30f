using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using System.Text.Json;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;

namespace ParetoQ.Trainer;

/// <summary>A training run restored from a checkpoint: the model, its optimizer, where the data stream was, and run
/// notes.</summary>
public sealed record TrainingState(TransformerModel<float> Model, AdamW Optimizer, ulong SamplerState,
    IReadOnlyDictionary<string, string> Run);

/// <summary>
/// Everything a run needs to continue exactly: config, parameters, α, AdamW moments and step, the window sampler's
/// state. Layout: "PQCKPT01", u32 JSON length, the JSON (config, grid, optimizer settings, step, sampler state, run
/// notes), zero padding to a multiple of 4, the float arrays (parameters, α, m, v, α-m, α-v; lengths follow from the
/// config), then the XXH3-64 of everything before it. Written through <see cref="AtomicFile"/>, so a crash mid-write
/// leaves the previous checkpoint intact.
/// </summary>
public static class Checkpoint
{
    private static ReadOnlySpan<byte> Magic => "PQCKPT01"u8;

    public static void Save(string path, TransformerModel<float> model, AdamW optimizer, ulong samplerState,
        IReadOnlyDictionary<string, string> run)
    {
        byte[] meta = Metadata(model, optimizer, samplerState, run);
        int header = 12 + meta.Length, padded = (header + 3) / 4 * 4;
        float[][] arrays = [model.Parameters, model.Alphas, optimizer.M, optimizer.V, optimizer.AlphaM,
            optimizer.AlphaV];
        var bytes = new byte[padded + arrays.Sum(a => (long)a.Length * 4) + 8];
        Magic.CopyTo(bytes);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(8), (uint)meta.Length);
        meta.CopyTo(bytes, 12);
        int at = padded;
        foreach (var array in arrays)
        {
            MemoryMarshal.AsBytes(array.AsSpan()).CopyTo(bytes.AsSpan(at));
            at += array.Length * 4;
        }
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(at), XxHash3.HashToUInt64(bytes.AsSpan(0, at)));
        AtomicFile.Write(path, overwrite: true, fs => fs.Write(bytes));
    }

    public static TrainingState Load(string path)
    {
        InvalidDataException Bad(string problem) => new($"{path}: not a valid checkpoint: {problem}");
        byte[] bytes = InputFile.ReadAll(path, Array.MaxLength,
            problem => new InvalidDataException($"{path}: {problem}"));
        if (bytes.Length < 20 || !bytes.AsSpan(0, 8).SequenceEqual(Magic)) throw Bad("no PQCKPT01 header");
        if (XxHash3.HashToUInt64(bytes.AsSpan(0,
            bytes.Length - 8)) != BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(bytes.Length - 8)))
            throw Bad("checksum mismatch (truncated or corrupted)");
        int metaLength = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(8)), int.MaxValue);
        if (metaLength > bytes.Length - 20) throw Bad("metadata length past the end");
        // The checksum already vouches for the bytes; a parse or field error means another program wrote the file.
        using var doc = StrictJson.Parse(bytes.AsMemory(12, metaLength), 16, "metadata", problem => Bad(problem));
        try
        {
            return Read(doc.RootElement, bytes, metaLength, path, Bad);
        }
        catch (Exception e) when (e is KeyNotFoundException or InvalidOperationException or FormatException
            or OverflowException)
        {
            throw Bad($"metadata field missing or of the wrong kind ({e.Message})");
        }
    }

    private static TrainingState Read(JsonElement root, byte[] bytes, int metaLength, string path,
        Func<string, InvalidDataException> bad)
    {
        var config = ModelConfig.Parse(root.GetProperty("config"), path);
        WeightFormat? grid = root.GetProperty("projections").ValueKind == JsonValueKind.Null ? null
            : WeightFormats.TryParse(root.GetProperty("projections").GetString()!, out var f) ? f
                : throw bad("unknown projection grid");
        var o = root.GetProperty("optimizer");
        var settings = new AdamWSettings
        {
            LearningRate = o.GetProperty("lr").GetDouble(), MinLearningRate = o.GetProperty("min_lr").GetDouble(),
            Beta1 = o.GetProperty("beta1").GetDouble(), Beta2 = o.GetProperty("beta2").GetDouble(),
                Epsilon = o.GetProperty("eps").GetDouble(),
            WeightDecay = o.GetProperty("weight_decay").GetDouble(), ClipNorm = o.GetProperty("clip_norm").GetDouble(),
            WarmupSteps = o.GetProperty("warmup_steps").GetInt32(),
                TotalSteps = o.GetProperty("total_steps").GetInt32(),
        };
        var model = new TransformerModel<float>(config, grid);
        var optimizer = new AdamW(model, settings) { Step = root.GetProperty("step").GetInt32() };
        float[][] arrays = [model.Parameters, model.Alphas, optimizer.M, optimizer.V, optimizer.AlphaM,
            optimizer.AlphaV];
        int at = (12 + metaLength + 3) / 4 * 4;
        if (bytes.Length != at + arrays.Sum(a
            => (long)a.Length * 4) + 8) throw bad($"{bytes.Length} bytes do not hold the arrays its config needs");
        foreach (var array in arrays)
        {
            MemoryMarshal.Cast<byte, float>(bytes.AsSpan(at, array.Length * 4)).CopyTo(array);
            at += array.Length * 4;
        }
        ulong sampler = ulong.Parse(root.GetProperty("sampler_state").GetString()!, NumberStyles.HexNumber,
            CultureInfo.InvariantCulture);
        var run = root.GetProperty("run").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString() ?? "",
            StringComparer.Ordinal);
        return new TrainingState(model, optimizer, sampler, run);
    }

    private static byte[] Metadata(TransformerModel<float> model, AdamW optimizer, ulong samplerState,
        IReadOnlyDictionary<string, string> run)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WritePropertyName("config");
            using (var config = JsonDocument.Parse(model.Config.ToJson())) config.RootElement.WriteTo(w);
            if (model.Projections is { } grid) w.WriteString("projections", WeightFormats.Name(grid));
            else w.WriteNull("projections");
            var s = optimizer.Settings;
            w.WriteStartObject("optimizer");
            w.WriteNumber("lr", s.LearningRate);
            w.WriteNumber("min_lr", s.MinLearningRate);
            w.WriteNumber("beta1", s.Beta1);
            w.WriteNumber("beta2", s.Beta2);
            w.WriteNumber("eps", s.Epsilon);
            w.WriteNumber("weight_decay", s.WeightDecay);
            w.WriteNumber("clip_norm", s.ClipNorm);
            w.WriteNumber("warmup_steps", s.WarmupSteps);
            w.WriteNumber("total_steps", s.TotalSteps);
            w.WriteEndObject();
            w.WriteNumber("step", optimizer.Step);
            w.WriteString("sampler_state", samplerState.ToString("x16", CultureInfo.InvariantCulture));
            w.WriteStartObject("run");
            foreach (var (k, v) in run.OrderBy(p => p.Key, StringComparer.Ordinal)) w.WriteString(k, v);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return ms.ToArray();
    }
}
