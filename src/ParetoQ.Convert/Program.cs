using System.CommandLine;
using System.Globalization;
using ParetoQ.CommandLine;
using ParetoQ.Runtime.Backends.Cpu;
using ParetoQ.Runtime.Conversion;
using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Interchange;
using ParetoQ.Runtime.Model;
using ParetoQ.Runtime.Quantization;
using ParetoQ.Runtime.Text;

namespace ParetoQ.Convert;

/// <summary>paretoq-convert: Hugging Face, GGUF, llama2.c and .pq sources → .pq; .pq → GGUF; inspect and verify .pq
/// files.</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        var input = new Argument<string>("INPUT") { Description = "Hugging Face checkpoint directory (config.json, " +
            "safetensors or pytorch_model.bin, tokenizer files), a GGUF file (llama architecture), a .pq file to " +
            "requantize, or a llama2.c model.bin with --tokenizer; with --to gguf, a .pq file" };
        var output = new Option<string>("--output", "-o") { Description = "The file to write", Required = true };
        var to = new Option<string>("--to") { Description = "Output format: pq (from a Hugging Face directory) or " +
            "gguf (from a .pq file, for llama.cpp)", DefaultValueFactory = _ => "pq" };
        to.AcceptOnlyFromAmong("pq", "gguf");
        var bits = new Option<string>("--bits") { Description = "Projection weights: auto (detect snapped grids, use " +
            "trained clip values), 1, 1.58, 2, 3, 4 (ParetoQ grids, also spelled binary, ternary, q2_seq, q3_row, " +
            "q4_row; round-to-nearest when not snapped), q4_g32, i8_row, bf16, f16, f32", DefaultValueFactory = _
            => "auto" };
        bits.AcceptOnlyFromAmong([.. ConversionOptions.BitsNames.Keys]);
        var head = new Option<string>("--head") { Description = "Embedding and output head format: i8_row, q4_g32, " +
            "f16, bf16, f32", DefaultValueFactory = _ => "i8_row" };
        head.AcceptOnlyFromAmong([.. ConversionOptions.HeadNames.Keys]);
        var force = new Option<bool>("--force") { Description = "Replace the output file if it exists" };
        var tokenizer = new Option<string?>("--tokenizer")
        {
            Description = "With a llama2.c checkpoint (model.bin): its tokenizer.bin",
        };
        var verbose = new Option<bool>("--verbose",
            "-v") { Description = "Print every tensor's origin, format and reconstruction error" };

        var root = new RootCommand("paretoq-convert: convert Hugging Face, GGUF and llama2.c checkpoints to .pq and " +
            ".pq to GGUF, and inspect or verify .pq " +
            "files") { input, output, to, bits, head, force, tokenizer, verbose };
        root.SetAction(p =>
        {
            if (p.GetValue(to) == "gguf")
            {
                if (p.GetResult(bits) is { Implicit: false } || p.GetResult(head) is { Implicit: false })
                    throw new UsageException("--bits and --head choose how a Hugging Face checkpoint is quantized; " +
                        "GGUF export keeps the .pq file's formats");
                return ExportGguf(p.GetValue(input)!, p.GetValue(output)!, p.GetValue(force), p.GetValue(verbose));
            }
            return Convert(p.GetValue(input)!, p.GetValue(tokenizer), p.GetValue(output)!, new ConversionOptions
            {
                Bits = ConversionOptions.BitsNames[p.GetValue(bits)!],
                Head = ConversionOptions.HeadNames[p.GetValue(head)!],
                Overwrite = p.GetValue(force),
            }, p.GetValue(verbose));
        });

        var file = new Argument<string>("MODEL") { Description = "A .pq file" };
        var inspectJson = new Option<bool>("--json") { Description = "Write one JSON object instead of text" };
        var inspect = new Command("inspect", "Print a .pq file's config, tokenizer, provenance and tensors")
            { file, inspectJson };
        inspect.SetAction(p => p.GetValue(inspectJson) ? InspectJson(p.GetValue(file)!) : Inspect(p.GetValue(file)!));
        var verifyFile = new Argument<string>("MODEL") { Description = "A .pq file" };
        var verify = new Command("verify",
            "Check every checksum of a .pq file, then that the model and its tokenizer load") { verifyFile };
        verify.SetAction(p => Verify(p.GetValue(verifyFile)!));
        root.Subcommands.Add(inspect);
        root.Subcommands.Add(verify);

        return ProgramErrors.Invoke(root, args, "paretoq-convert");
    }

    /// <summary>A one-line progress bar on stderr when it is a terminal; null otherwise.</summary>
    private static Action<int, int, string>? ProgressBar() => Console.IsErrorRedirected ? null : (done, total, name) =>
    {
        int filled = done * 30 / total;
        Console.Error.Write($"\r[{new string('#', filled)}{new string('.', 30 - filled)}] {done}/{total} {name,-60}");
        if (done == total) Console.Error.WriteLine();
    };

    private static int Convert(string input, string? tokenizer, string output, ConversionOptions options,
        bool verbose)
    {
        options = options with { Progress = ProgressBar() };
        var report = ModelSources.Convert(input, tokenizer, output, options);

        var c = report.Source.Config;
        Console.WriteLine($"converted {Path.GetFullPath(input)} ({report.Source.Family}, {report.WeightFiles}) " +
            $"-> {report.Output}");
        Console.WriteLine($"  model      {c.Architecture}: {c.NumLayers} " +
            $"layers{(c.LayerRepeat > 1 ? $" x{c.LayerRepeat} shared" : "")}, dim {c.HiddenSize}, heads " +
            $"{c.NumHeads}/{c.NumKvHeads}, FFN {c.IntermediateSize}, vocab {c.VocabSize}, context " +
            $"{c.MaxPositionEmbeddings}, {(c.TieWordEmbeddings ? "tied" : "separate")} head");
        Console.WriteLine($"  tokenizer  {report.Tokenizer.Description}");
        foreach (var group in report.Tensors.Where(t => !t.Spec.IsNorm).GroupBy(t
            => (t.Origin, t.Format, t.IsProjection)))
        {
            string what = group.Key.Item3 ? "projections" : "embedding/head";
            string origin = group.Key.Origin switch
            {
                TensorOrigin.Snapped => "snapped grid: α and codes recovered, every stored value reproduced exactly",
                TensorOrigin.TrainedClip => "latent weights quantized with the trained weight_clip_val",
                TensorOrigin.FakeQuantScale => "per-channel int4 with weight_fake_quantizer.scale",
                TensorOrigin.RoundToNearest => "round-to-nearest quantization (PTQ)",
                _ => "floating point",
            };
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {what,-14} {WeightFormats.Name(group.Key.Format)} x{group.Count()}: {origin}; max |error| " +
                    $"{group.Max(t => t.MaxError):G3}, relative error {Rms(group):G3}"));
        }
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"  size       {report.FileBytes / 1e6:F1} MB; projections {report.ProjectionBitsPerWeight:F3} " +
                $"bits/weight (codes + scales), whole file {report.FileBitsPerWeight:F3} bits/parameter"));
        foreach (string note in report.Notes) Console.WriteLine($"  note       {note}");
        if (verbose)
            foreach (var t in report.Tensors)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"    {t.Name,-52} {WeightFormats.Name(t.Format),-8} [{t.Rows}, {t.Cols}] {t.Origin,-15} " +
                        $"max|err| {t.MaxError:G3} rel {t.RelativeError:G3}"));
        return 0;
    }

    private static int ExportGguf(string input, string output, bool force, bool verbose)
    {
        if (Directory.Exists(input))
            throw new ArgumentException($"{input} is a directory; --to gguf exports a .pq file (convert the " +
                $"checkpoint to .pq first)");
        if (!File.Exists(input)) throw new FileNotFoundException($"model file '{input}' does not exist");
        var report = GgufExporter.Export(input, output, force, ProgressBar());
        var c = report.Config;
        Console.WriteLine($"exported {Path.GetFullPath(input)} -> {report.Output} (GGUF v{GgufWriter.Version}, llama " +
            $"architecture)");
        Console.WriteLine($"  model      {report.Blocks} blocks, dim {c.HiddenSize}, heads " +
            $"{c.NumHeads}/{c.NumKvHeads}, FFN {c.IntermediateSize}, vocab {c.VocabSize}, " +
            $"{(c.TieWordEmbeddings ? "tied" : "separate")} head");
        foreach (var group in report.Tensors.GroupBy(t => (t.SourceFormat, t.Type, t.Fallback)))
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {WeightFormats.Name(group.Key.SourceFormat),-8} -> {group.Key.Type,-6} x{group.Count()}: " +
                    $"{(group.Key.Type is GgmlType.F32 or GgmlType.F16 or GgmlType.BF16 && group.Key.Fallback is null ? "copied" : $"same levels, scales rounded to fp16 (max relative change {group.Max(t => t.MaxScaleError):G3})")}{(group.Key.Fallback is { } why ? $"; wider type because {why}" : "")}"));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  size       {report.FileBytes / 1e6:F1} MB"));
        foreach (string note in report.Notes) Console.WriteLine($"  note       {note}");
        if (verbose)
            foreach (var t in report.Tensors)
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"    {t.Name,-28} {t.Type,-6} from {t.Source} ({WeightFormats.Name(t.SourceFormat)}), {t.Bytes} " +
                        $"bytes, scale rounding {t.MaxScaleError:G3}"));
        return 0;
    }

    private static double Rms(IEnumerable<TensorReport> tensors)
        => Math.Sqrt(tensors.Average(t => t.RelativeError * t.RelativeError));

    private static int Inspect(string path)
    {
        using var file = PqFile.Open(path, verifyChecksums: false);
        Console.WriteLine($"{path}: .pq version {PqFile.Version}, {file.FileLength} bytes, {file.Tensors.Count} " +
            $"tensors");
        Console.WriteLine("config:");
        Console.WriteLine(Indent(file.Config.ToString()));
        var p = file.Provenance;
        Console.WriteLine($"provenance: source {p.Source}; bits {p.Bits}; tool {p.Tool}");
        foreach (var (k, v) in p.Settings) Console.WriteLine($"  {k}: {v}");
        var t = file.Tokenizer;
        Console.WriteLine($"tokenizer: {t.Kind}, {file.TokenizerBytes.Length} bytes, BOS {t.BosId}, EOS " +
            $"[{string.Join(", ", t.EosIds)}], PAD {t.PadId}, {t.SpecialTokens.Count} special tokens, chat template: " +
            $"{(t.ChatTemplate is null ? "none" : $"{t.ChatTemplate.Length} characters")}, chat format " +
            $"{ChatTemplate.Detect(t.ChatTemplate, t.SpecialTokens, t.BosId >= 0)}");
        Console.WriteLine("tensors:");
        foreach (var tensor in file.Tensors)
            Console.WriteLine($"  {tensor.Name,-52} {WeightFormats.Name(tensor.Format),-8} {tensor.ShapeText,-14} " +
                $"{tensor.Length,12} bytes");
        foreach (var group in file.Tensors.GroupBy(x => x.Format).OrderBy(g => g.Key))
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {WeightFormats.Name(group.Key)}: {group.Count()} tensors, " +
                    $"{group.Sum(x => x.ElementCount) / 1e6:F2}M weights, {group.Sum(x => x.Length) / 1e6:F1} MB, " +
                    $"{group.Sum(x => x.Length) * 8.0 / group.Sum(x => x.ElementCount):F3} bits/weight"));
        return 0;
    }

    // The same facts as Inspect, for scripts: the config exactly as stored, then everything else by name.
    private static int InspectJson(string path)
    {
        using var file = PqFile.Open(path, verifyChecksums: false);
        using var stdout = Console.OpenStandardOutput();
        using (var w = new System.Text.Json.Utf8JsonWriter(stdout, new System.Text.Json.JsonWriterOptions
            { Indented = true, Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("path", path);
            w.WriteNumber("version", PqFile.Version);
            w.WriteNumber("bytes", file.FileLength);
            w.WritePropertyName("config");
            file.Config.WriteTo(w);
            var p = file.Provenance;
            w.WriteStartObject("provenance");
            w.WriteString("source", p.Source);
            w.WriteString("bits", p.Bits);
            w.WriteString("tool", p.Tool);
            w.WriteStartObject("settings");
            foreach (var (k, v) in p.Settings) w.WriteString(k, v);
            w.WriteEndObject();
            w.WriteEndObject();
            var t = file.Tokenizer;
            w.WriteStartObject("tokenizer");
            w.WriteString("kind", t.Kind);
            w.WriteNumber("bytes", file.TokenizerBytes.Length);
            w.WriteNumber("bos_id", t.BosId);
            w.WriteStartArray("eos_ids");
            foreach (int id in t.EosIds) w.WriteNumberValue(id);
            w.WriteEndArray();
            w.WriteNumber("pad_id", t.PadId);
            w.WriteNumber("special_tokens", t.SpecialTokens.Count);
            if (t.ChatTemplate is null) w.WriteNull("chat_template");
            else w.WriteString("chat_template", t.ChatTemplate);
            w.WriteString("chat_format", ChatTemplate.Detect(t.ChatTemplate, t.SpecialTokens, t.BosId >= 0).ToString());
            w.WriteEndObject();
            w.WriteStartArray("tensors");
            foreach (var tensor in file.Tensors)
            {
                w.WriteStartObject();
                w.WriteString("name", tensor.Name);
                w.WriteString("format", WeightFormats.Name(tensor.Format));
                w.WriteString("shape", tensor.ShapeText);
                w.WriteNumber("elements", tensor.ElementCount);
                w.WriteNumber("bytes", tensor.Length);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        stdout.Write("\n"u8);
        return 0;
    }

    private static int Verify(string path)
    {
        // One open hashes everything once; the model and tokenizer are then built on that same mapping.
        using var file = PqFile.Open(path, verifyChecksums: true);
        Console.WriteLine($"{path}: header, metadata, tokenizer and {file.Tensors.Count} tensor checksums OK");
        using var backend = new CpuBackend(new CpuBackendOptions { Threads = 1 });
        using var model = new LanguageModel(file, backend);
        Tokenizers.FromFile(file, model.Config.VocabSize);
        Console.WriteLine($"{path}: config valid ({model.Config.Architecture}, {model.Config.NumLayers} layers), " +
            $"every tensor matches it, tokenizer loads");
        return 0;
    }

    private static string Indent(string text) => string.Join('\n', text.Split('\n').Select(l => "  " + l));
}
