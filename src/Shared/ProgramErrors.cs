using System.CommandLine;
using System.Text.RegularExpressions;

namespace ParetoQ.CommandLine;

/// <summary>
/// The one error contract of every program (linked into each program's project): one line on stderr,
/// "program: problem", never a stack trace; exit 1 for a bad input, model or file, 2 for bad usage (a command line
/// that does not parse or an option value out of range), 130 when SIGINT interrupted the work.
/// </summary>
internal static partial class ProgramErrors
{
    public const int Failed = 1;
    public const int BadUsage = 2;
    public const int Interrupted = 130;

    /// <summary>Parses <paramref name="args"/> and runs the chosen command under the contract.</summary>
    public static int Invoke(RootCommand root, string[] args, string program)
    {
        var parsed = root.Parse(args);
        if (ReportUsage(parsed, program)) return BadUsage;
        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (Exception e)
        {
            return Report(program, e);
        }
    }

    /// <summary>Prints the parse errors as one line, "program: messages (see --help)"; false when there are
    /// none.</summary>
    public static bool ReportUsage(ParseResult parsed, string program)
    {
        if (parsed.Errors.Count == 0) return false;
        // All of them: "Required command was not provided." alone would hide the misspelt command. The value after an
        // unknown option is not reported again.
        var names = OptionNames(parsed.CommandResult.Command);
        var messages = new List<string>();
        string? previous = null;
        foreach (var error in parsed.Errors)
        {
            var unknown = Unrecognized().Match(error.Message);
            if (unknown.Success && !unknown.Groups[1].Value.StartsWith('-') && previous?.StartsWith('-') == true)
                continue;
            previous = unknown.Success ? unknown.Groups[1].Value : null;
            messages.Add(unknown.Success ? UnknownArgument(unknown.Groups[1].Value, names) : Reword(error.Message));
        }
        Console.Error.WriteLine($"{program}: {OneLine(string.Join(' ', messages.Distinct()))} (see --help)");
        return true;
    }

    [GeneratedRegex(@"^Unrecognized command or argument '(.*)'\.$")]
    private static partial Regex Unrecognized();

    [GeneratedRegex(@" as expected type '([^']*)'")]
    private static partial Regex ExpectedType();

    private static List<string> OptionNames(Command command)
    {
        var names = new List<string>();
        for (Command? c = command; c is not null; c = c.Parents.OfType<Command>().FirstOrDefault())
            foreach (var o in c.Options.Where(o => !o.Hidden)) names.AddRange([o.Name, .. o.Aliases]);
        foreach (var sub in command.Subcommands) names.Add(sub.Name);
        return names;
    }

    // "unknown option '--tempreature' (did you mean --temperature?)": the known name nearest by edit distance, when
    // it is near enough to be a slip.
    private static string UnknownArgument(string argument, List<string> names)
    {
        string kind = argument.StartsWith('-') ? "option" : "argument";
        var (best, distance) = names.Select(n => (n, Distance(argument, n))).MinBy(p => p.Item2);
        return best is not null && distance <= Math.Max(2, argument.Length / 3)
            ? $"unknown {kind} '{argument}' (did you mean {best}?)." : $"unknown {kind} '{argument}'.";
    }

    private static int Distance(string a, string b)
    {
        var row = new int[b.Length + 1];
        for (int j = 0; j <= b.Length; j++) row[j] = j;
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }

    // The parser names .NET types ("as expected type 'System.Single'"); users see what kind of value is wanted.
    private static string Reword(string message) => ExpectedType().Replace(message, m => m.Groups[1].Value switch
    {
        var t when t.Contains("Single") || t.Contains("Double") => " as a number",
        var t when t.Contains("UInt") => " as a whole number ≥ 0",
        var t when t.Contains("Int") => " as a whole number",
        var t when t.Contains("Boolean") => " as true or false",
        _ => "",
    });

    /// <summary>Prints <paramref name="e"/> as the program's one error line and returns its exit code.</summary>
    public static int Report(string program, Exception e)
    {
        // A progress line on a terminal may be open; on a file or pipe stderr holds only whole lines.
        if (!Console.IsErrorRedirected) Console.Error.WriteLine();
        Console.Error.WriteLine($"{program}: {OneLine(Describe(e))}");
        return e switch
        {
            UsageException => BadUsage,
            OperationCanceledException => Interrupted,
            _ => Failed,
        };
    }

    /// <summary>The user-facing text of an exception: our own types carry finished messages; the framework's few
    /// user-reachable ones are reworded without their absolute paths and parameter names; anything else is a bug and
    /// says so, still on one line.</summary>
    public static string Describe(Exception e) => e switch
    {
        UsageException => e.Message,
        OperationCanceledException => "interrupted",
        OutOfMemoryException => "out of memory",
        Runtime.Format.OutputExistsException o => $"{o.OutputPath} already exists (--force replaces it)",
        FileNotFoundException { FileName: not null } f => $"file '{Shorten(f.FileName)}' does not exist",
        DirectoryNotFoundException => $"a directory on the path does not exist ({StripPaths(e.Message)})",
        UnauthorizedAccessException => $"permission denied ({StripPaths(e.Message)})",
        ArgumentException a when a.ParamName is not null => a.Message.Replace($" (Parameter '{a.ParamName}')", ""),
        ArgumentException or IOException or NotSupportedException or InvalidDataException or FormatException
            or Runtime.Format.PqFormatException or Runtime.Model.ModelConfigException
            or Runtime.Text.TokenizerException or Runtime.Interchange.CheckpointException
            or Runtime.Model.ContextLengthExceededException or ArithmeticException => e.Message,
        _ => $"internal error ({e.GetType().Name}): {e.Message}",
    };

    /// <summary>Whitespace runs (newlines and tabs of quoted JSON or framework text) as single spaces, and at most 400
    /// characters, so an error is always one readable line.</summary>
    public static string OneLine(string message)
    {
        string line = Whitespace().Replace(message, " ").Trim();
        return line.Length <= 400 ? line : line[..399] + "…";
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    private static string Shorten(string? path) =>
        path is null ? "?" : Path.GetRelativePath(Environment.CurrentDirectory, path);

    // The framework quotes absolute paths; the user gave relative ones.
    private static string StripPaths(string message) =>
        QuotedPath().Replace(message, m => $"'{Shorten(m.Groups[1].Value)}'");

    [GeneratedRegex(@"'(/[^']*)'")]
    private static partial Regex QuotedPath();

    /// <summary>Adds a validator that runs the engine's own check of a value (which throws
    /// <see cref="ArgumentException"/>) at parse time, so an out-of-range value is a usage error.</summary>
    public static void Check<T>(this Option<T> option, Action<T> check)
    {
        option.Validators.Add(result =>
        {
            if (result.Tokens.Count == 0) return;
            T value;
            try
            {
                value = result.GetValueOrDefault<T>()!;
            }
            catch (InvalidOperationException)
            {
                return; // not a T: the parser reports that itself
            }
            try
            {
                check(value);
            }
            catch (ArgumentException e)
            {
                result.AddError(Describe(e));
            }
        });
    }
}

/// <summary>A combination of options that cannot run, found after parsing: exit code 2, like a parse
/// error.</summary>
internal sealed class UsageException(string message) : Exception(message);
