using ParetoQ.Runtime.Format;
using ParetoQ.Runtime.Quantization;
using ParetoQ.TestModels;

const string Usage = """
    paretoq-modelgen: writes a deterministic random-weight test model of either architecture at any weight format.
    Usage:
      paretoq-modelgen [--arch mobilellm|mobilellm-pro] [--format 1|1.58|2|3|4|binary|ternary|q2_seq|q3_row|q4_row|
                       q4_g32|i8_row|f32] [--head i8_row|q4_g32|f16|bf16|f32] [--seed N] [-o FILE.pq] [--force]
    --arch     architecture (default mobilellm-pro)
    --head     the embedding/head format (default f32); int8 or 4-bit shrinks the largest per-token read at low bits
    -o         output file (default test-model.pq); an existing file is replaced only with --force
    """;
string arch = "mobilellm-pro", formatName = "q2_seq", headName = "f32", output = "test-model.pq";
int seed = 1;
bool force = false;
for (int i = 0; i < args.Length; i++)
{
    string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
    switch (args[i])
    {
        case "--arch": arch = Next(); break;
        case "--format": formatName = Next(); break;
        case "--head": headName = Next(); break;
        case "--seed": seed = int.Parse(Next()); break;
        case "-o": output = Next(); break;
        case "--force": force = true; break;
        case "--help" or "-h":
            Console.WriteLine(Usage);
            return 0;
        default:
            Console.Error.WriteLine($"error: unknown option '{args[i]}' (--help lists them)");
            return 2;
    }
}
if (!WeightFormats.TryParseOption(formatName, out var format) || !WeightFormats.IsKnown(format))
{
    Console.Error.WriteLine($"error: unknown format '{formatName}'");
    return 2;
}
if (!WeightFormats.TryParseOption(headName, out var head) || !WeightFormats.HeadFormats.Contains(head))
{
    Console.Error.WriteLine($"error: unsupported head format '{headName}' (i8_row, q4_g32, f16, bf16 or f32)");
    return 2;
}
var config = arch switch
{
    "mobilellm" => TestModelGenerator.MobileLlm(),
    "mobilellm-pro" => TestModelGenerator.MobileLlmPro(),
    _ => null,
};
if (config is null)
{
    Console.Error.WriteLine($"error: unknown architecture '{arch}' (mobilellm or mobilellm-pro)");
    return 2;
}

if (File.Exists(output) && !force)
{
    Console.Error.WriteLine($"error: {output} already exists (use --force to replace it)");
    return 1;
}
try
{
    TestModelGenerator.Write(output, config, format, head, seed, overwrite: force);
    using var file = PqFile.Open(output);
    Console.WriteLine($"wrote {output}: {file.FileLength} bytes, {file.Tensors.Count} tensors, {config.Architecture}, projections {formatName}, head {headName}, provenance '{file.Provenance.Source}'");
    return 0;
}
catch (Exception e) when (e is PqFormatException or IOException)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 1;
}
