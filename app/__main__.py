from qwq_chat.app.cli import main

main()
